#!/usr/bin/env bash
# `make demo-small`: the patch engine alone on a tiny example tree, no OpenStack needed.
# Lays out the patches the way the kubelet mounts a ConfigMap, then runs check-patches,
# apply-patches (twice: the second run finds everything already applied) and status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ke="$top/.venv/bin/kolla-entry"
work="$top/work/demo-small"

rm -rf "$work"
mkdir -p "$work/greeter-patches/..2026_11_25_00_00_00.000000001"
cp -r "$here/site-packages" "$work/site-packages"
stamp="..2026_11_25_00_00_00.000000001"
for p in "$here"/patches/*.patch; do
  cp "$p" "$work/greeter-patches/$stamp/"
  ln -s "..data/$(basename "$p")" "$work/greeter-patches/$(basename "$p")"
done
ln -s "$stamp" "$work/greeter-patches/..data"

opts=(--patches "$work/*-patches/*.patch" --target "$work/site-packages")
echo "== kolla-entry check-patches (dry run)"
"$ke" --log-format console check-patches "${opts[@]}"
echo
echo "== kolla-entry apply-patches --json"
"$ke" --log-format console apply-patches "${opts[@]}" --state-file "$work/state.json" --json
echo
echo "== the patched module"
PYTHONPATH="$work/site-packages" python3 -c 'import greeter.hello as h; print(h.greeting(" ops "), "|", h.whisper(), "|", h.HOTFIX)'
echo
echo "== kolla-entry apply-patches again: already applied, nothing written"
"$ke" --log-format console apply-patches "${opts[@]}" --state-file "$work/state.json"
echo
echo "== kolla-entry status"
"$ke" status --state-file "$work/state.json"
