#!/usr/bin/env bash
# Resolve every OpenStack service of images/ together into ONE constraints file (images/constraints.txt).
#
#   images/resolve.sh          writes images/constraints.txt and fills the shared wheel cache
#
# The series is pinned in images/series.txt (one `project==version` per service, plus the programs and
# drivers the images add). Steps: `pip wheel` of everything at once (one resolve; ovs and simplegeneric
# have no wheel on PyPI and are built here, pure Python, no compiler), an offline install of those wheels
# into a scratch venv made with the images' Python (Debian bookworm's /usr/bin/python3), `pip check`, and
# `pip freeze` into the constraints file.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/work/images"
PYTHON="${PYTHON:-/usr/bin/python3}"
SERIES="$ROOT/images/series.txt"
OUT="$ROOT/images/constraints.txt"
venv="$WORK/resolve-venv"
wheels="$WORK/resolve-wheels"

rm -rf "$venv" "$wheels"
mkdir -p "$WORK"
"$PYTHON" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" wheel --prefer-binary --wheel-dir "$wheels" -r "$SERIES"
"$venv/bin/pip" install --no-index --find-links "$wheels" -r "$SERIES"
"$venv/bin/pip" check
{
    echo "# One resolve of every service image's packages (images/series.txt) for $("$PYTHON" -V)."
    echo "# Regenerate with images/resolve.sh (see images/README.md); \`pip check\` was clean."
    "$venv/bin/pip" freeze --all --exclude pip --exclude setuptools --exclude wheel | LC_ALL=C sort -f
} >"$OUT"
echo "wrote $OUT ($(grep -vc '^#' "$OUT") pins)"
