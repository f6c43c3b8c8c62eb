#!/usr/bin/env bash
# Container test (issue #5): build the base and keystone images without any registry, then run Keystone the
# way a pod would (read-only ConfigMap and Secret mounts in the kubelet's `..data` layout, no TTY, a non-root
# service user) and check PID 1, the hot-fix over HTTP, a token, SIGTERM on stop, restart, a conflicting patch
# and the dry run. Prints one PASS/FAIL line per check and ends with "N passed, N failed"; exits 1 on any
# failure (a failed image build stops the test there).
#
# Needs root with podman, runc and debootstrap (Debian: apt-get install podman runc debootstrap).
# Environment: IMAGE_TAG (default ctest), GRACE (stop timeout in seconds, default 30), KEEP=1 keeps the
# containers and work/images/test-run for inspection.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/images/test"
RUN="$ROOT/work/images/test-run"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
export IMAGE_TAG="${IMAGE_TAG:-ctest}"
IMAGE="localhost/kolla-entry-keystone:$IMAGE_TAG"
GRACE="${GRACE:-30}"
SITE=/var/lib/kolla/venv/lib/python3/site-packages
export CONTAINERS_CONF="$HERE/containers.conf"
NAME_PREFIX="kolla-entry-ct-$$"
CONTAINERS=()
STARTED="$(date +%s)"
# shellcheck source=images/test/lib.sh
. "$HERE/lib.sh"

# Run images/test/inside.py in a running container.
inside() {
    local name="$1"
    shift
    pm exec -i "$name" python3 - "$@" <"$HERE/inside.py"
}

elapsed() {
    echo $(($(date +%s) - STARTED))
}

cleanup() {
    if [ "${KEEP:-0}" != 1 ] && [ "${#CONTAINERS[@]}" -gt 0 ]; then
        pm rm --force --ignore --time 0 "${CONTAINERS[@]}" >/dev/null 2>&1
    fi
}

finish() {
    cleanup
    echo "container test took $(elapsed) s"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

prepare_run_folder() {
    rm -rf "$RUN"
    mkdir -p "$RUN/src"
    keystone_config
    # Unique markers: they must never show up in any log.
    PASSWORD="ct-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    DB_MARKER="ct-db-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    mkdir -p "$RUN/src/secrets"
    printf '%s\n' "$PASSWORD" >"$RUN/src/secrets/admin-password"
    printf 'sqlite:////var/lib/keystone/%s.db\n' "$DB_MARKER" >"$RUN/src/secrets/database-connection"
    # Secrets as with `defaultMode: 0400`: only root (kolla-entry, before dropping privileges) reads them.
    configmap_dir "$RUN/secrets" 0400 "$RUN"/src/secrets/*
    keystone_patches
    # Keystone's persistent data (database, key repositories): volumes owned by the keystone uid.
    install -d -o 42425 -g 42425 -m 0700 "$RUN/data" "$RUN/fernet-keys" "$RUN/credential-keys"
    PORT="$(probe free-port)"
    URL="http://127.0.0.1:$PORT/v3"
    COMMON=(
        --ulimit host --network host
        -e "KEYSTONE_BIND_HOST=127.0.0.1" -e "KEYSTONE_BIND_PORT=$PORT" -e "KEYSTONE_PUBLIC_HOST=127.0.0.1"
        -v "$RUN/config:/var/lib/kolla/config_files:ro"
        -v "$RUN/secrets:/var/lib/kolla/secrets/keystone:ro"
        -v "$RUN/data:/var/lib/keystone"
        -v "$RUN/fernet-keys:/etc/keystone/fernet-keys"
        -v "$RUN/credential-keys:/etc/keystone/credential-keys"
    )
    PATCHES_OK=(-v "$RUN/patches-ok:/keystone-patches:ro")
    PATCHES_CONFLICT=(-v "$RUN/patches-conflict:/keystone-patches:ro")
}

build_images() {
    local started
    started="$(date +%s)"
    if PYC_INVALIDATION_MODE=unchecked-hash "$ROOT/images/build.sh" keystone; then
        pass "images build: base and keystone (build $(($(date +%s) - started)) s)"
    else
        fail "images build"
        finish
    fi
}

check_image_facts() {
    local facts
    facts="$(pm image inspect --format '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$IMAGE")"
    expect "image: ENTRYPOINT dumb-init --single-child -- kolla-entry, CMD run" "$facts" \
        '["dumb-init","--single-child","--","kolla-entry"] ["run"]'
    CONTAINERS+=("$NAME_PREFIX-facts")
    facts="$(pm_run 60 --rm --name "$NAME_PREFIX-facts" --ulimit host --entrypoint sh "$IMAGE" -c '
        id keystone
        readlink /var/lib/kolla/venv/lib/python3
        stat -c "%U %a" '"$SITE"'/keystone
        ls '"$SITE"'/keystone/server/flask/__pycache__/application.*.pyc | wc -l
        grep -c "include-system-site-packages = false" /opt/kolla-entry/pyvenv.cfg
        /var/lib/kolla/venv/bin/python -c "import kolla_entry" 2>/dev/null && echo kolla_entry-in-service-venv
        true' 2>&1)"
    expect "image: keystone user 42425, lib/python3 symlink, root-owned site-packages with build-time .pyc, kolla-entry isolated" \
        "$facts" "$(printf '%s\n' 'uid=42425(keystone) gid=42425(keystone) groups=42425(keystone),42400(kolla)' \
            python3.11 'root 755' 1 1)"
}

# dry_run NAME PATCH_MOUNT EXPECTED_RC EXPECTED_STATUSES
dry_run() {
    local name="$1" expected_rc="$3" expected="$4" out err rc
    local -n mounts="$2"
    local cname="$NAME_PREFIX-dry-run-${#CONTAINERS[@]}"
    CONTAINERS+=("$cname")
    out="$(pm_run 120 --rm --name "$cname" --ulimit host "${mounts[@]}" "$IMAGE" check-patches --json \
        2>"$RUN/dry-run.err")"
    rc=$?
    err="$(cat "$RUN/dry-run.err")"
    expect "$name: exit status" "$rc" "$expected_rc"
    expect "$name: statuses" "$(probe statuses <<<"$out")" "$expected"
    LAST_DRY_RUN_ERR="$err"
}

check_dry_runs() {
    dry_run "dry run (docker run IMAGE check-patches)" PATCHES_OK 0 "$(printf '%s\n' \
        '0001-x-kolla-hotfix-header.patch applicable' '0002-bcrypt-warn-only-when-truncating.patch applicable' \
        '0003-nova-claims-log-node-name.patch skipped')"
    dry_run "dry run with a conflicting patch" PATCHES_CONFLICT 1 "$(printf '%s\n' \
        '0001-x-kolla-hotfix-header.patch applicable' '0002-bcrypt-warn-only-when-truncating.patch applicable' \
        '0003-nova-claims-log-node-name.patch skipped' '0004-conflicting-vary-header.patch conflict')"
    check_clear_line "dry run with a conflicting patch" "$LAST_DRY_RUN_ERR"
}

# One plain line (besides the JSON events) tells the operator the patch, the file and the hunk.
check_clear_line() {
    local line
    line="$(grep '^kolla-entry: ' <<<"$2" | grep '0004-conflicting-vary-header.patch' \
        | grep 'keystone/server/flask/application.py' | grep -i -m1 'hunk')"
    if [ -n "$line" ]; then
        pass "$1: one line names patch, file and hunk"
        printf '      %s\n' "${line:0:300}"
    else
        fail "$1: one line names patch, file and hunk" "$2"
    fi
}

bootstrap() {
    # The one-shot bootstrap job, as a Kolla/Helm db-sync job runs it: through kolla-entry, so the config
    # (and the admin password from the Secret) is rendered first. The password reaches keystone-manage
    # through the environment, never the command line that kolla-entry logs.
    # shellcheck disable=SC2016  # expanded by the container's shell, after kolla-entry rendered the file
    local script='set -e
        . /etc/keystone/admin-openrc.sh
        keystone-manage db_sync
        keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
        keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
        OS_BOOTSTRAP_PASSWORD="$OS_PASSWORD" keystone-manage bootstrap \
            --bootstrap-public-url "$OS_AUTH_URL" --bootstrap-region-id RegionOne'
    local name="$NAME_PREFIX-bootstrap" started rc
    CONTAINERS+=("$name")
    started="$(date +%s)"
    pm_run 300 --name "$name" "${COMMON[@]}" "${PATCHES_OK[@]}" "$IMAGE" run -- sh -c "$script" \
        >"$RUN/bootstrap.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass "bootstrap job (db_sync, fernet_setup, credential_setup, bootstrap) through kolla-entry run ($(($(date +%s) - started)) s)"
    else
        fail "bootstrap job exit status $rc" "$(cat "$RUN/bootstrap.log")"
    fi
}

# wait_serving NAME WHAT: wait for Keystone's HTTP port, failing early if the container stops.
wait_serving() {
    local name="$1" started state
    started="$(date +%s)"
    while [ $(($(date +%s) - started)) -lt 120 ]; do
        if probe wait-http "$URL" 1; then
            pass "$2: Keystone answers over HTTP ($(($(date +%s) - started)) s)"
            return 0
        fi
        state="$(pm inspect --format '{{.State.Status}}' "$name" 2>&1)"
        if [ "$state" != running ]; then
            fail "$2: container $state before Keystone answered" "$(pm logs "$name" 2>&1)"
            return 1
        fi
    done
    fail "$2: Keystone did not answer within 120 s" "$(pm logs "$name" 2>&1)"
    return 1
}

check_processes() {
    local name="$1" procs pid1 children
    procs="$(inside "$name" procs)"
    pid1="$(awk '$1 == 1 { $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print }' <<<"$procs")"
    expect "PID 1 is dumb-init --single-child" "$pid1" "dumb-init --single-child -- kolla-entry run"
    children="$(awk '$2 == 1' <<<"$procs")"
    if [ "$(wc -l <<<"$children")" -eq 1 ] && awk '$3 == 42425 && $4 == 42425' <<<"$children" | grep -q keystone_wsgi \
        && ! grep -q kolla-entry <<<"$children"; then
        pass "Keystone is PID 1's only child (kolla-entry exec'd it) and runs as uid 42425"
        printf '      %s\n' "$children"
    else
        fail "Keystone is PID 1's only child (kolla-entry exec'd it) and runs as uid 42425" "$procs"
    fi
}

check_http() {
    expect "$1: hot-fix 0001 visible over HTTP (X-Kolla-Hotfix header)" \
        "$(probe header "$URL" X-Kolla-Hotfix)" "0001-x-kolla-hotfix-header"
    local token
    token="$(probe token "$URL" admin "$RUN/src/secrets/admin-password")"
    if [[ "$token" =~ ^201\ [1-9][0-9]*$ ]]; then
        pass "$1: a token is issued with the bootstrap password from the Secret"
    else
        fail "$1: a token is issued with the bootstrap password from the Secret" "HTTP status, token length: $token"
    fi
}

# check_state NAME CONTAINER EXPECTED_STATUS
check_state() {
    local out
    out="$(pm exec "$2" kolla-entry status --json 2>&1)"
    expect "$1: kolla-entry status lists the patches" "$(probe statuses <<<"$out")" "$(printf '%s\n' \
        "0001-x-kolla-hotfix-header.patch $3" "0002-bcrypt-warn-only-when-truncating.patch $3" \
        '0003-nova-claims-log-node-name.patch skipped')"
}

check_pyc() {
    local out
    out="$(inside "$1" pyc "$SITE" keystone/server/flask/application.py keystone/common/password_hashing.py)"
    if [ -n "$out" ] && ! grep -qv -E ' (ok|absent)$' <<<"$out"; then
        pass "no stale .pyc for the hot-fixed modules (image compiled with unchecked-hash)"
    else
        fail "no stale .pyc for the hot-fixed modules (image compiled with unchecked-hash)" "$out"
    fi
}

# check_logs WHAT LOGTEXT: JSON lines without a TTY, and no secret in them.
check_logs() {
    local counts
    counts="$(probe json-lines <<<"$2")"
    if [[ "$counts" =~ ^[1-9][0-9]*\ 0$ ]]; then
        pass "$1: kolla-entry logs JSON lines without a TTY ($counts)"
    else
        fail "$1: kolla-entry logs JSON lines without a TTY (json, broken: $counts)" "$2"
    fi
    if grep -q -e "$PASSWORD" -e "$DB_MARKER" <<<"$2"; then
        fail "$1: no secret value in the logs" "$(grep -e "$PASSWORD" -e "$DB_MARKER" <<<"$2")"
    else
        pass "$1: no secret value in the logs"
    fi
}

check_exec_event() {
    local event
    event="$(probe last-event exec <<<"$1")"
    if grep -q keystone_wsgi <<<"$event" && grep -q '"user": "keystone"' <<<"$event"; then
        pass "the last kolla-entry event names the command exec'd and the user"
    else
        fail "the last kolla-entry event names the command exec'd and the user" "$event"
    fi
}

# stop_within_grace WHAT COMMAND...: podman stop/restart must not need SIGKILL.
stop_within_grace() {
    local what="$1" started took err code
    shift
    started="$(date +%s.%N)"
    err="$("$@" 2>&1 >/dev/null)"
    took="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    code="$(pm inspect --format '{{.State.ExitCode}}' "$SERVICE")"
    if ! grep -qi sigkill <<<"$err" && { [ "$code" == 0 ] || [ "$code" == 143 ]; }; then
        pass "$what: SIGTERM stops Keystone within the grace period, no SIGKILL (${took} s, exit status $code)"
    else
        fail "$what: SIGTERM stops Keystone within the grace period, no SIGKILL (${took} s, exit status $code)" "$err"
    fi
}

# The hot-fixed files' checksum, size and mtime.
patched_files() {
    # shellcheck disable=SC2016  # the container's shell expands it
    pm exec -w "$SITE" "$1" sh -c 'for f in "$@"; do echo "$(sha256sum "$f") $(stat -c "%s %Y" "$f")"; done' sh \
        keystone/server/flask/application.py keystone/common/password_hashing.py 2>&1
}

run_service() {
    SERVICE="$NAME_PREFIX-keystone"
    CONTAINERS+=("$SERVICE")
    if ! pm run -d --name "$SERVICE" --stop-timeout "$GRACE" "${COMMON[@]}" "${PATCHES_OK[@]}" "$IMAGE" >/dev/null; then
        fail "start the Keystone container"
        return
    fi
    wait_serving "$SERVICE" "first start" || return
    check_processes "$SERVICE"
    check_http "first start"
    check_state "first start" "$SERVICE" applied
    check_pyc "$SERVICE"
    local logs
    logs="$(pm logs "$SERVICE" 2>&1)"
    check_logs "first start" "$logs"
    check_exec_event "$logs"

    expect "the rendered keystone.conf is the service user's, mode 0600" \
        "$(pm exec "$SERVICE" stat -c '%U:%G %a' /etc/keystone/keystone.conf 2>&1)" "keystone:keystone 600"

    local before tree
    before="$(pm logs "$SERVICE" 2>&1 | wc -l)"
    tree="$(patched_files "$SERVICE")"
    stop_within_grace "podman restart" pm restart -t "$GRACE" "$SERVICE"
    wait_serving "$SERVICE" "restart (same writable layer)" || return
    check_state "restart" "$SERVICE" already-applied
    if [ "$(grep -cE '^[0-9a-f]{64} ' <<<"$tree")" != 2 ]; then
        fail "restart: the hot-fixed files are untouched (no checksums before the restart)" "$tree"
    else
        expect "restart: the hot-fixed files are untouched (content, size, mtime)" "$(patched_files "$SERVICE")" "$tree"
    fi
    check_http "restart"
    logs="$(pm logs "$SERVICE" 2>&1 | tail -n +"$((before + 1))")"
    if grep -q 'patch_already_applied' <<<"$logs" && ! grep -q '"event": "patch_applied"' <<<"$logs"; then
        pass "restart: the logs report the patches already applied, nothing re-applied"
    else
        fail "restart: the logs report the patches already applied, nothing re-applied" "$logs"
    fi
    stop_within_grace "podman stop" pm stop -t "$GRACE" "$SERVICE"
    check_logs "all runs" "$(pm logs "$SERVICE" 2>&1; cat "$RUN/bootstrap.log")"
}

run_conflict() {
    local name="$NAME_PREFIX-conflict" out rc changed
    CONTAINERS+=("$name")
    out="$(pm_run 120 --name "$name" "${COMMON[@]}" "${PATCHES_CONFLICT[@]}" "$IMAGE" 2>&1)"
    rc=$?
    expect "conflicting patch: the container exits with status 1" "$rc" 1
    check_clear_line "conflicting patch" "$out"
    if ! grep -q -e '"event": "exec"' -e 'keystone_wsgi: serving' <<<"$out" && ! probe wait-http "$URL" 0.5; then
        pass "conflicting patch: Keystone is never started"
    else
        fail "conflicting patch: Keystone is never started" "$out"
    fi
    changed="$(pm diff "$name" 2>&1 | grep /var/lib/kolla/venv)"
    expect "conflicting patch: nothing written into the service venv (podman diff)" "$changed" ""
    check_logs "conflicting patch" "$out"
}

main() {
    trap 'echo "interrupted"; finish' INT TERM
    echo "container test: podman $(podman --version | awk '{print $3}'), image $IMAGE"
    # Containers an interrupted earlier run left behind (their names carry this script's prefix).
    pm ps -a --format '{{.Names}}' | grep '^kolla-entry-ct-' | xargs -r podman --runtime runc \
        --cgroup-manager cgroupfs rm --force --ignore --time 0 >/dev/null 2>&1
    build_images
    prepare_run_folder
    check_image_facts
    check_dry_runs
    bootstrap
    run_service
    run_conflict
    finish
}

main "$@"
