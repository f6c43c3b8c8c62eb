#!/bin/bash
# A reference patching tool followed by what makes its result import-ready, as an operator would
# run it (issue #13): `python -m compileall -j0` of the changed .py files that exist afterwards.
# Usage: then_compile.sh PYTHON TARGET LISTFILE -- TOOL [ARGS...]   (stdin and cwd go to TOOL)
set -e
python=$1 target=$2 list=$3
shift 4
"$@"
cd "$target"
existing=()
while IFS= read -r f; do
    if [ -e "$f" ]; then existing+=("$f"); fi
done < "$list"
exec "$python" -m compileall -q -j0 "${existing[@]}"
