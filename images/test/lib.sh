# Shared by container-test.sh and hardened-test.sh (sourced, never run): podman wrappers, PASS/FAIL counting,
# the kubelet's ConfigMap layout and the keystone example's files and patches as a pod mounts them.
# The sourcing script sets ROOT, HERE, PY and RUN, and defines finish (its summary and cleanup).
# shellcheck shell=bash

PASSED=0
FAILED=0

pm() {
    podman --runtime runc --cgroup-manager cgroupfs "$@"
}

# pm_run SECONDS ARGS...: a foreground `podman run` that cannot hang the test (cleanup removes the container).
pm_run() {
    local seconds="$1"
    shift
    timeout --kill-after 10 "$seconds" podman --runtime runc --cgroup-manager cgroupfs run "$@"
}

probe() {
    "$PY" "$HERE/probe.py" "$@"
}

pass() {
    PASSED=$((PASSED + 1))
    printf 'PASS: %s\n' "$1"
}

# fail NAME [DETAILS]: details are indented, last 15 lines.
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL: %s\n' "$1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | tail -15 | sed 's/^/      /'
    fi
}

# expect NAME ACTUAL EXPECTED
expect() {
    if [ "$2" == "$3" ]; then
        pass "$1"
    else
        fail "$1" "expected: $3"$'\n'"got:      $2"
    fi
}

# configmap_dir MOUNT MODE FILE...: lay FILEs out as the kubelet mounts a ConfigMap or Secret volume: the data
# in a hidden timestamped folder, `..data` a symlink to it, each key a symlink through `..data`
# (same layout as tests/helpers.py configmap_dir).
configmap_dir() {
    local mount="$1" mode="$2" stamp="..2026_11_25_10_00_00.123456789"
    shift 2
    mkdir -p "$mount/$stamp"
    for file in "$@"; do
        install -m "$mode" "$file" "$mount/$stamp/$(basename "$file")"
    done
    ln -s "$stamp" "$mount/..data"
    for file in "$@"; do
        ln -s "..data/$(basename "$file")" "$mount/$(basename "$file")"
    done
}

# The keystone example's files as a pod's ConfigMap holds them, laid out at $RUN/config: the example's own
# install step (examples/keystone/podlayout.py fill_markers) with the paths of an image and the keystone user.
keystone_config() {
    local out="$RUN/src/config" left
    mkdir -p "$out"
    "$PY" - "$ROOT/examples/keystone" "$out" <<'PYEOF' || { fail "render the keystone example for the image"; finish; }
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from podlayout import CONFIG_SOURCES, EXAMPLE_DIR, fill_markers
out = Path(sys.argv[2])
for name in CONFIG_SOURCES:
    (out / name).write_text(fill_markers((EXAMPLE_DIR / name).read_text(), Path("/"), "keystone"))
PYEOF
    left="$(grep -o '@[A-Z_]*@' "$out"/* | sort -u)"
    if [ -n "$left" ]; then
        fail "render the keystone example for the image: unknown install placeholders" "$left"
        finish
    fi
    configmap_dir "$RUN/config" 0644 "$out"/*
}

# The keystone patches as ConfigMap mounts: $RUN/patches-ok (the repository's) and $RUN/patches-conflict (those
# plus 0004, which cannot apply to keystone 30.0.0 after 0001: its context is not in application.py).
keystone_patches() {
    mkdir -p "$RUN/src"
    configmap_dir "$RUN/patches-ok" 0644 "$ROOT"/patches/keystone/*.patch
    cat >"$RUN/src/0004-conflicting-vary-header.patch" <<'PATCH'
diff --git a/keystone/server/flask/application.py b/keystone/server/flask/application.py
--- a/keystone/server/flask/application.py
+++ b/keystone/server/flask/application.py
@@ -107,5 +107,5 @@ def _add_vary_x_auth_token_header(response):
     # Add the expected Vary Header, this is run after every request in the
     # response-phase
-    response.headers['Vary'] = 'X-Auth-Token, X-Not-In-This-Keystone'
+    response.headers['Vary'] = 'X-Auth-Token'
     return response
 
PATCH
    configmap_dir "$RUN/patches-conflict" 0644 "$ROOT"/patches/keystone/*.patch \
        "$RUN/src/0004-conflicting-vary-header.patch"
}

# refused_start WHAT PATCHES MOUNT NAMES WORD...: a hardened start (the caller's HARDENED options and IMAGE) with
# the PATCHES folder mounted at MOUNT must exit 1 with one `kolla-entry:` line holding every WORD ("names NAMES"),
# and serve nothing: the overlay volume $RUN/overlay, emptied first, stays empty.
refused_start() {
    local what="$1" patches="$2" mount="$3" names="$4" name="$NAME_PREFIX-refused" err rc word missing=""
    shift 4
    CONTAINERS+=("$name")
    find "$RUN/overlay" -mindepth 1 -delete
    pm_run 120 --name "$name" "${HARDENED[@]}" -v "$patches:$mount:ro" "$IMAGE" >/dev/null 2>"$RUN/refused.err"
    rc=$?
    err="$(grep '^kolla-entry: ' "$RUN/refused.err" | tail -1)"
    expect "$what refuses the start (exit 1)" "$rc" 1
    for word in "$@"; do
        grep -qF -- "$word" <<<"$err" || missing+=" $word"
    done
    if [ -n "$err" ] && [ -z "$missing" ]; then
        pass "one line names $names"
        printf '      %s\n' "${err:0:300}"
    else
        fail "one line names $names (missing:$missing)" "$(cat "$RUN/refused.err")"
    fi
    expect "nothing was served: the overlay volume is empty" "$(ls -A "$RUN/overlay")" ""
}
