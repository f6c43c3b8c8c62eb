#!/usr/bin/env bash
# Hardened horizon (issue #16): the horizon image as built (static files collected and compressed offline into a
# read-only STATIC_ROOT, its unpatchable files declared) run as a restricted pod runs it: `--read-only`,
# `--user 42420`, `--cap-drop ALL`, `no-new-privileges`, volumes owned by 42420 for the overlay, the config folder,
# /tmp, /var/lib/horizon and the state folder, gunicorn loading the chart's WSGI shim (conf horizon_wsgi.py of
# charts/horizon/values.yaml: WhiteNoise around horizon). Checks: the login page is served (every compressed
# CSS/JS file it names is in the image's STATIC_ROOT, and served by the same gunicorn with the bytes of the
# image's copy), with the hot-fixed middleware's header and the hot-fixed login template's title (a template patch
# is served from the overlay), as uid 42420 with no capability, nothing written outside the volumes; a patch to a
# static file refuses the start in one line naming the file and why.
# Prints PASS/FAIL lines and "N passed, N failed".
#
# Environment: HORIZON_IMAGE (default localhost/kolla-entry-horizon:latest, built by images/build.sh horizon).
# Needs root with podman and runc, and .venv's PyYAML (make .venv/.installed-stamp) to read the chart's shim.
# KEEP=1 keeps the containers and work/images/horizon-hardened-run.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/images/test"
RUN="$ROOT/work/images/horizon-hardened-run"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
IMAGE="${HORIZON_IMAGE:-localhost/kolla-entry-horizon:latest}"
OVERLAY=/var/lib/kolla-entry/overlay
STATIC=/usr/share/openstack-dashboard/static
export CONTAINERS_CONF="$HERE/containers.conf"
NAME_PREFIX="kolla-entry-horizon-$$"
CONTAINERS=()

# shellcheck source=images/test/lib.sh
. "$HERE/lib.sh"
finish() {
    if [ "${KEEP:-0}" != 1 ] && [ "${#CONTAINERS[@]}" -gt 0 ]; then
        pm rm --force --ignore --time 0 "${CONTAINERS[@]}" >/dev/null 2>&1
    fi
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}
trap finish INT TERM

# Two fixes for horizon 27.0.0 besides the repository's 0001 (its middleware's header): the login page's title
# (a template without a compress block: served from the overlay) and a static file (collected into STATIC_ROOT
# at build time: declared unpatchable by the image).
write_patches() {
    cat >"$RUN/src/0002-login-title.patch" <<'PATCH'
diff --git a/horizon/templates/auth/login.html b/horizon/templates/auth/login.html
--- a/horizon/templates/auth/login.html
+++ b/horizon/templates/auth/login.html
@@ -1,7 +1,7 @@
 {% extends "base.html" %}
 {% load i18n %}
 
-{% block title %}{% trans "Login" %}{% endblock %}
+{% block title %}{% trans "Login" %} (hot-fixed template){% endblock %}
 
 {% block body_id %}splash{% endblock %}
 
PATCH
    cat >"$RUN/src/0003-static-file.patch" <<'PATCH'
diff --git a/horizon/static/horizon/js/horizon.communication.js b/horizon/static/horizon/js/horizon.communication.js
--- a/horizon/static/horizon/js/horizon.communication.js
+++ b/horizon/static/horizon/js/horizon.communication.js
@@ -1,3 +1,4 @@
+// HOTFIX 0003: a static file, served from the image build's copy
 /**
  * Licensed under the Apache License, Version 2.0 (the "License"); you may
  * not use this file except in compliance with the License. You may obtain
PATCH
    configmap_dir "$RUN/patches-ok" 0644 "$ROOT"/patches/horizon/*.patch "$RUN/src/0002-login-title.patch"
    configmap_dir "$RUN/patches-static" 0644 "$ROOT"/patches/horizon/*.patch "$RUN/src/0003-static-file.patch"
}

prepare() {
    rm -rf "$RUN"
    mkdir -p "$RUN/src/config"
    PORT="$(probe free-port)"
    URL="http://127.0.0.1:$PORT/auth/login/"
    # The chart's settings that matter here (DEBUG, STATIC_ROOT, COMPRESS_OFFLINE); a local cache instead of
    # memcached, which the chart test (images/test/chart_test.py horizon) runs.
    cat >"$RUN/src/config/local_settings.py" <<PY
DEBUG = False
ALLOWED_HOSTS = ["*"]
SECRET_KEY = "horizon-hardened-test"
OPENSTACK_KEYSTONE_URL = "http://127.0.0.1:5000/v3"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STATIC_ROOT = "$STATIC"
COMPRESS_OFFLINE = True
PY
    # The chart's own shim, as it is (no template in it), so that this test serves what the chart serves.
    "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["conf"]["horizon_wsgi.py"], end="")' \
        "$ROOT/charts/horizon/values.yaml" >"$RUN/src/config/horizon_wsgi.py"
    cat >"$RUN/src/config/config.json" <<JSON
{"command": "gunicorn --no-control-socket --bind 127.0.0.1:$PORT --workers 1 --chdir /etc/openstack-dashboard horizon_wsgi:application",
 "user": "horizon",
 "config_files": [{"source": "/var/lib/kolla/config_files/local_settings.py",
                   "dest": "/etc/openstack-dashboard/local_settings.py", "owner": "horizon", "perm": "0600"},
                  {"source": "/var/lib/kolla/config_files/horizon_wsgi.py",
                   "dest": "/etc/openstack-dashboard/horizon_wsgi.py", "owner": "horizon", "perm": "0600"}]}
JSON
    configmap_dir "$RUN/config" 0644 "$RUN"/src/config/*
    write_patches
    install -d -o 42420 -g 42420 -m 0700 "$RUN/overlay" "$RUN/etc" "$RUN/tmp" "$RUN/home" "$RUN/state"
    HARDENED=(
        --ulimit host --network host
        --read-only --user 42420:42420 --cap-drop ALL --security-opt no-new-privileges
        -v "$RUN/overlay:$OVERLAY" -e "KOLLA_ENTRY_OVERLAY=$OVERLAY" -e KOLLA_CONFIG_STRATEGY=COPY_ALWAYS
        -v "$RUN/etc:/etc/openstack-dashboard" -v "$RUN/tmp:/tmp" -v "$RUN/home:/var/lib/horizon"
        -v "$RUN/state:/run/kolla-entry" -v "$RUN/config:/var/lib/kolla/config_files:ro"
    )
}

# The login page: its status, X-Kolla-Hotfix header, <title> and the compressed files it links to.
login_page() {
    "$PY" - "$URL" <<'PYEOF'
import re, sys, urllib.error, urllib.request
try:
    answer = urllib.request.urlopen(sys.argv[1], timeout=30)
except urllib.error.HTTPError as err:  # a 500 (OfflineGenerationError, ...) is an answer to report
    answer = err
body = answer.read().decode(errors="replace")
print(answer.status, answer.headers.get("X-Kolla-Hotfix", ""))
title = re.search(r"<title>(.*?)</title>", body, re.S)
print(" ".join(title.group(1).split()) if title else "no title")
print(" ".join(sorted(set(re.findall(r'"/static/(dashboard/(?:css|js)/[^"]+)"', body)))))
PYEOF
}

# The compressed CSS and JS files the login page names, fetched from the dashboard: each must answer 200 with
# the bytes of the image's STATIC_ROOT copy and, named by its content's hash, an immutable Cache-Control.
served_assets() {
    local name="$1" served image
    shift
    served="$("$PY" - "${URL%/auth/login/}/static/" "$@" <<'PYEOF'
import hashlib, sys, urllib.error, urllib.request
for path in sys.argv[2:]:
    try:
        answer = urllib.request.urlopen(sys.argv[1] + path, timeout=30)
    except urllib.error.HTTPError as err:
        answer = err
    body = answer.read()
    print(hashlib.sha256(body).hexdigest(), path, answer.status, answer.headers.get("Cache-Control"))
PYEOF
)"
    # shellcheck disable=SC2016  # expanded by the container's sh
    image="$(pm exec "$name" sh -c 'cd "$0" && for f in "$@"; do set -- $(sha256sum "$f"); echo "$1 $2 200 max-age=315360000, public, immutable"; done' "$STATIC" "$@" 2>&1)"
    if grep -q '/css/' <<<"$served" && grep -q '/js/' <<<"$served" && [ "$served" == "$image" ]; then
        pass "the dashboard serves every compressed CSS/JS file the page names: 200, the image's bytes, cached for good ($(grep -c '/css/' <<<"$served") CSS, $(grep -c '/js/' <<<"$served") JS)"
    else
        fail "the dashboard serves the compressed CSS/JS files with the image's bytes" \
            "served (sha256 path status cache-control):"$'\n'"$served"$'\n'"the image's:"$'\n'"$image"
    fi
}

dashboard() {
    local name="$NAME_PREFIX-dashboard" page assets missing diff
    CONTAINERS+=("$name")
    pm run -d --name "$name" --stop-timeout 10 "${HARDENED[@]}" -v "$RUN/patches-ok:/horizon-patches:ro" "$IMAGE" \
        >/dev/null || { fail "start the hardened horizon container"; finish; }
    if ! probe wait-http "$URL" 180; then
        fail "the login page answers" "$(pm logs "$name" 2>&1 | tail -20)"
        finish
    fi
    page="$(login_page 2>&1)"
    if [ "$(sed -n 1p <<<"$page")" == "200 0001-x-kolla-hotfix-header" ]; then
        pass "the login page answers 200 with the hot-fixed middleware's header (patch 0001, from the overlay)"
    else
        fail "the login page answers 200 with the hot-fixed middleware's header" \
            "$page"$'\n'"$(pm logs "$name" 2>&1 | grep -v '^{' | tail -8)"
    fi

    expect "the hot-fixed login template is served (patch 0002, a template in the overlay)" \
        "$(sed -n 2p <<<"$page")" "Login (hot-fixed template) - OpenStack Dashboard"
    assets="$(sed -n 3p <<<"$page")"
    # shellcheck disable=SC2086  # one path per word
    missing="$(pm exec "$name" sh -c 'cd "$0" && for f in "$@"; do [ -f "$f" ] || echo "$f"; done' "$STATIC" $assets 2>&1)"
    if [ -n "$assets" ] && [ -z "$missing" ]; then
        pass "every compressed CSS/JS file the page names is in the image's read-only STATIC_ROOT ($(wc -w <<<"$assets") files)"
    else
        fail "every compressed CSS/JS file the page names is in the image's STATIC_ROOT" "assets: $assets"$'\n'"missing: $missing"
    fi
    # shellcheck disable=SC2086  # one path per word
    served_assets "$name" $assets
    expect "the dashboard runs as uid 42420 with no capability" \
        "$(pm exec "$name" sh -c 'id -u; grep CapEff /proc/1/status | tr -d "\t"' 2>&1)" \
        "$(printf '42420\nCapEff:0000000000000000')"
    diff="$(pm diff "$name" 2>&1)"
    # Only the mount points podman made for the volumes may appear.
    expect "podman diff: nothing written outside the volumes" \
        "$(grep -v -x -E '[AC] (/etc/openstack-dashboard|/tmp|/var/lib/horizon|/run/kolla-entry|/var/lib/kolla-entry(/overlay)?|/var/lib/kolla(/config_files)?|/horizon-patches|/etc|/run|/var/lib|/var|/etc/(hosts|hostname|resolv.conf)|/run/.containerenv)' <<<"$diff")" ""
    pm stop -t 10 "$name" >/dev/null 2>&1
}

pm image exists "$IMAGE" || { fail "the horizon image $IMAGE exists (images/build.sh horizon)"; finish; }
prepare
dashboard
refused_start "a patch to a static file" "$RUN/patches-static" /horizon-patches "the patch, the static file and why" \
    0003-static-file.patch horizon/static/horizon/js/horizon.communication.js unpatchable
finish
