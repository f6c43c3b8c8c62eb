#!/usr/bin/env bash
# Hardened container test (issue #16): Keystone run as a restricted pod would run it, with hot-fixes served
# from an overlay. `--read-only`, `--user 42425`, `--cap-drop ALL`, `--security-opt no-new-privileges`;
# volumes owned by 42425 (as emptyDirs with the pod's fsGroup; podman 4.3's --tmpfs takes no uid) for the
# config destinations, the state folder and the overlay (an emptyDir survives container restarts), podman's
# own tmpfs on /tmp and /run. Checks: the bootstrap job and the service start, the hot-fix
# is live over HTTP, Keystone runs as 42425, `podman diff` shows no change under site-packages (byte-identical
# to the image's), the overlay holds the fix and its bytecode (the service loads the hot-fixed module from the
# overlay's pyc, at the first start and after the restart), a restart reuses the overlay (and how much faster its
# patch step is), a conflicting patch refuses the start in one line. Prints PASS/FAIL lines and "N passed, N failed".
#
# Uses a keystone image built by images/build.sh (KEYSTONE_IMAGE, default localhost/kolla-entry-keystone:latest;
# built with IMAGE_TAG=hardened when absent) and adds one thin layer with this checkout's kolla-entry and the
# import hook, the step images/service.Dockerfile has, so the test needs no full rebuild.
# Needs root with podman and runc. KEEP=1 keeps the containers, the image and work/images/hardened-run.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/images/test"
RUN="$ROOT/work/images/hardened-run"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
SITE=/var/lib/kolla/venv/lib/python3/site-packages
OVERLAY=/var/lib/kolla-entry/overlay
export CONTAINERS_CONF="$HERE/containers.conf"
NAME_PREFIX="kolla-entry-hardened-$$"
IMAGE="localhost/kolla-entry-hardened-test:$$"
CONTAINERS=()

# shellcheck source=images/test/lib.sh
. "$HERE/lib.sh"
finish() {
    if [ "${KEEP:-0}" != 1 ]; then
        [ "${#CONTAINERS[@]}" -gt 0 ] && pm rm --force --ignore --time 0 "${CONTAINERS[@]}" >/dev/null 2>&1
        pm rmi --ignore "$IMAGE" >/dev/null 2>&1
    fi
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}
trap finish INT TERM

base_image() {
    BASE="${KEYSTONE_IMAGE:-localhost/kolla-entry-keystone:latest}"
    if ! pm image exists "$BASE"; then
        IMAGE_TAG=hardened "$ROOT/images/build.sh" keystone || { fail "build the keystone image"; finish; }
        BASE=localhost/kolla-entry-keystone:hardened
    fi
    # The id, not the tag: another build may move the tag while this test runs.
    BASE_ID="$(pm image inspect --format '{{.Id}}' "$BASE")"
}

thin_image() {
    local ctx="$RUN/image"
    mkdir -p "$ctx"
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$ctx" "$ROOT" >/dev/null 2>&1 \
        || "$PY" -m pip wheel -q --no-deps -w "$ctx" "$ROOT" >/dev/null || { fail "build the kolla-entry wheel"; finish; }
    cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_ID
COPY *.whl /tmp/
RUN /opt/kolla-entry/bin/pip install -q --no-deps --force-reinstall --no-index /tmp/*.whl && rm /tmp/*.whl \\
    && kolla-entry install-overlay-hook --target $SITE \\
    && /var/lib/kolla/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash $SITE/kolla_entry_overlay.py
EOF
    if pm build -q -t "$IMAGE" "$ctx" >/dev/null 2>"$RUN/build.err"; then
        pass "image: this kolla-entry and the overlay import hook on $BASE"
    else
        fail "image: this kolla-entry and the overlay import hook" "$(cat "$RUN/build.err")"; finish
    fi
}

prepare() {
    rm -rf "$RUN"
    mkdir -p "$RUN/src/secrets"
    keystone_config
    PASSWORD="hard-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '%s\n' "$PASSWORD" >"$RUN/src/secrets/admin-password"
    printf 'sqlite:////var/lib/keystone/keystone.db\n' >"$RUN/src/secrets/database-connection"
    # A restricted pod's Secret: readable by the pod's uid (fsGroup), never by root alone.
    configmap_dir "$RUN/secrets" 0400 "$RUN"/src/secrets/*
    chown -R 42425:42425 "$RUN/secrets"
    keystone_patches
    install -d -o 42425 -g 42425 -m 0700 "$RUN/data" "$RUN/fernet-keys" "$RUN/credential-keys" "$RUN/overlay" \
        "$RUN/etc-keystone" "$RUN/kolla-keystone" "$RUN/run-kolla-entry"
    PORT="$(probe free-port)"
    URL="http://127.0.0.1:$PORT/v3"
    HARDENED=(
        --ulimit host --network host
        --read-only --user 42425:42425 --cap-drop ALL --security-opt no-new-privileges
        -v "$RUN/etc-keystone:/etc/keystone" -v "$RUN/kolla-keystone:/var/lib/kolla/keystone"
        -v "$RUN/run-kolla-entry:/run/kolla-entry"
        -v "$RUN/overlay:$OVERLAY" -e "KOLLA_ENTRY_OVERLAY=$OVERLAY"
        -e "KEYSTONE_BIND_HOST=127.0.0.1" -e "KEYSTONE_BIND_PORT=$PORT" -e "KEYSTONE_PUBLIC_HOST=127.0.0.1"
        -v "$RUN/config:/var/lib/kolla/config_files:ro"
        -v "$RUN/secrets:/var/lib/kolla/secrets/keystone:ro"
        -v "$RUN/data:/var/lib/keystone"
        -v "$RUN/fernet-keys:/etc/keystone/fernet-keys"
        -v "$RUN/credential-keys:/etc/keystone/credential-keys"
    )
}

bootstrap() {
    # shellcheck disable=SC2016  # expanded in the container, after kolla-entry rendered the file
    local script='set -e
        . /etc/keystone/admin-openrc.sh
        keystone-manage db_sync
        keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
        keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
        OS_BOOTSTRAP_PASSWORD="$OS_PASSWORD" keystone-manage bootstrap \
            --bootstrap-public-url "$OS_AUTH_URL" --bootstrap-region-id RegionOne'
    local name="$NAME_PREFIX-bootstrap"
    CONTAINERS+=("$name")
    if pm_run 300 --name "$name" "${HARDENED[@]}" -v "$RUN/patches-ok:/keystone-patches:ro" "$IMAGE" \
        run -- sh -c "$script" >"$RUN/bootstrap.log" 2>&1; then
        pass "bootstrap job through kolla-entry run in the hardened container"
    else
        fail "bootstrap job" "$(cat "$RUN/bootstrap.log")"; finish
    fi
    # The job filled the overlay volume; the service container starts on an empty one, as a new pod would.
    find "$RUN/overlay" -mindepth 1 -delete
}

wait_serving() {
    local started state
    started="$(date +%s)"
    while [ $(($(date +%s) - started)) -lt 120 ]; do
        if probe wait-http "$URL" 1; then pass "$1: Keystone answers over HTTP ($(($(date +%s) - started)) s)"; return 0; fi
        state="$(pm inspect --format '{{.State.Status}}' "$SERVICE" 2>&1)"
        [ "$state" != running ] && { fail "$1: container $state" "$(pm logs "$SERVICE" 2>&1)"; return 1; }
    done
    fail "$1: no answer within 120 s" "$(pm logs "$SERVICE" 2>&1)"
    return 1
}

# Imports the hot-fixed module as a service process would (the container's env: the hook active) with the
# import system's compile step spied on: "overlay from-bytecode <mode>" when its pyc in the overlay was used.
# shellcheck disable=SC2016
BYTECODE_PROBE='
import importlib._bootstrap_external as ext, importlib.util as util, os, struct
compiled = []
original = ext.SourceLoader.source_to_code
def spy(self, data, path, **kwargs):
    compiled.append(str(path))
    return original(self, data, path, **kwargs)
ext.SourceLoader.source_to_code = spy
import keystone.server.flask.application as module
with open(util.cache_from_source(module.__file__), "rb") as handle:
    flags = struct.unpack("<I", handle.read(8)[4:])[0]
print("overlay" if "/kolla-entry/overlay/" in os.path.realpath(module.__file__) else "image",
      "compiled" if module.__file__ in compiled else "from-bytecode",
      {0: "timestamp", 1: "unchecked-hash", 3: "checked-hash"}.get(flags, "unknown"))'

bytecode_check() {  # WHEN
    local seen
    # stdout only: importing keystone warns on stderr (eventlet's deprecation), shown when the check fails.
    seen="$(pm exec "$SERVICE" /var/lib/kolla/venv/bin/python -c "$BYTECODE_PROBE" 2>"$RUN/bytecode.err")"
    if [[ "$seen" =~ ^overlay\ from-bytecode\ (timestamp|checked-hash|unchecked-hash)$ ]]; then
        pass "$1: the hot-fixed module loads from its pyc in the overlay, no compilation ($seen)"
    else
        fail "$1: the hot-fixed module loads from its pyc in the overlay" "$seen"$'\n'"$(cat "$RUN/bytecode.err")"
    fi
    # The service (the overlay's owner) could have written that pyc itself: it must be kolla-entry's, recorded
    # in the generation's manifest (a reuse checks it against the module and its code).
    expect "$1: that pyc is kolla-entry's (in the generation's manifest)" "$("$PY" -c '
import json, sys
tree = json.load(open(sys.argv[1]))["tree"]
print(sorted(p.split("/__pycache__/")[0] for p in tree["bytecode"] if "/flask/__pycache__/application." in p))
' "$RUN/overlay/current/manifest.json" 2>&1)" "['keystone/server/flask']"
}

patch_step() {  # LOGS: the patches run_step event's outcome fields and duration
    "$PY" -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        e = json.loads(line)
        if e.get("event") == "run_step" and e.get("step") == "patches":
            print(e.get("applied", 0), e.get("already-applied", 0), e["duration_ms"])' <<<"$1" | tail -1
}

service() {
    SERVICE="$NAME_PREFIX-keystone"
    CONTAINERS+=("$SERVICE")
    pm run -d --name "$SERVICE" --stop-timeout 30 "${HARDENED[@]}" -v "$RUN/patches-ok:/keystone-patches:ro" \
        "$IMAGE" >/dev/null || { fail "start the hardened Keystone container"; finish; }
    wait_serving "first start" || finish
    expect "first start: hot-fix 0001 live over HTTP (served from the overlay)" \
        "$(probe header "$URL" X-Kolla-Hotfix)" "0001-x-kolla-hotfix-header"
    local token
    token="$(probe token "$URL" admin "$RUN/src/secrets/admin-password")"
    if [[ "$token" =~ ^201\ [1-9][0-9]*$ ]]; then pass "a token is issued"; else fail "a token is issued" "$token"; fi
    expect "Keystone runs as uid 42425 with no capability" \
        "$(pm exec "$SERVICE" sh -c 'id -u; grep CapEff /proc/1/status | tr -d "\t"' 2>&1)" "$(printf '42425\nCapEff:0000000000000000')"
    local diff
    diff="$(pm diff "$SERVICE" 2>&1)"
    # Only mount points podman made for the volumes may appear; nothing under site-packages.
    expect "podman diff: no change under site-packages" "$(grep -F "/site-packages" <<<"$diff")" ""
    printf '      podman diff: %s\n' "$(tr '\n' ' ' <<<"$diff")"
    expect "site-packages' application.py is byte-identical to the image's" \
        "$(pm exec "$SERVICE" sha256sum "$SITE/keystone/server/flask/application.py" 2>&1 | cut -d' ' -f1)" \
        "$(pm_run 60 --rm --entrypoint sha256sum "$IMAGE" "$SITE/keystone/server/flask/application.py" | cut -d' ' -f1)"
    if grep -q "X-Kolla-Hotfix" "$RUN"/overlay/gen-*/site-packages/keystone/server/flask/application.py 2>/dev/null; then
        pass "the overlay volume holds the patched application.py"
    else
        fail "the overlay volume holds the patched application.py" "$(ls -R "$RUN/overlay" | head -20)"
    fi
    bytecode_check "first start"
    local logs first again generation
    logs="$(pm logs "$SERVICE" 2>&1)"
    expect "first start: modules_import_ready logged, every patched module" \
        "$("$PY" -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{") and json.loads(line).get("event") == "modules_import_ready":
        e = json.loads(line); print(e["modules"] == e["of"] > 0)' <<<"$logs" | tail -1)" "True"
    if grep -q "$PASSWORD" <<<"$logs"; then fail "no secret in the logs"; else pass "no secret in the logs"; fi
    first="$(patch_step "$logs")"
    generation="$(readlink "$RUN/overlay/current")"
    local before
    before="$(wc -l <<<"$logs")"
    pm restart -t 30 "$SERVICE" >/dev/null 2>&1
    wait_serving "restart" || finish
    logs="$(pm logs "$SERVICE" 2>&1 | tail -n +"$((before + 1))")"
    again="$(patch_step "$logs")"
    if grep -q '"overlay_reused"' <<<"$logs" && [ "$(readlink "$RUN/overlay/current")" == "$generation" ]; then
        pass "restart: the overlay is reused (patch step: first start ${first##* } ms, restart ${again##* } ms)"
    else
        fail "restart: the overlay is reused" "$logs"
    fi
    expect "restart: hot-fix still live" "$(probe header "$URL" X-Kolla-Hotfix)" "0001-x-kolla-hotfix-header"
    bytecode_check "restart"
    expect "restart: podman diff still shows no change under site-packages" \
        "$(pm diff "$SERVICE" 2>&1 | grep -F /site-packages)" ""
    echo "      patch step (applied already-applied ms): first start: $first; restart: $again"
}

base_image
prepare
thin_image
bootstrap
service
refused_start "a conflicting patch" "$RUN/patches-conflict" /keystone-patches "patch, file and hunk" \
    0004-conflicting-vary-header.patch keystone/server/flask/application.py hunk
finish
