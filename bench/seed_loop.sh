#!/bin/bash
# The seed's apply_patches loop (its charts' common.sh), re-typed for the benchmark as reference (a):
# take the first `--- ` path of each patch, drop `--- a/`, skip the patch when that file is missing
# in the target, else `patch -p1`. Usage: seed_loop.sh TARGET PATCH_DIR
set -e
cd "$1"
for p in "$2"/*.patch; do
    f=$(grep -o -m1 '^--- [A-Za-z0-9\-_/.]*' "$p" | cut -c7-)
    if [ -e "$f" ]; then
        patch -p1 < "$p"
    fi
done
