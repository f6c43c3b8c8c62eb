#!/usr/bin/env bash
# Build the kolla-entry base image and the service images without any registry (issue #5).
#
#   images/build.sh [SERVICE...]        default SERVICE: keystone
#
# Steps, each cached under work/images/ (git-ignored):
#   1. a Debian bookworm minbase root made by debootstrap (python3, python3-venv, dumb-init included),
#      kept as a tarball and imported as localhost/kolla-entry-debootstrap:bookworm;
#   2. build contexts with the Python wheels prepared on the host (kolla-entry + its dependencies for the
#      base; the service and its constraints for each service image);
#   3. `podman build` of Dockerfile.base, then images/<service>/Dockerfile.
#
# Environment:
#   BASE            use this image as Dockerfile.base's BASE instead of the debootstrap import
#   IMAGE_PREFIX    image names, default localhost/kolla-entry (-> localhost/kolla-entry-base:latest, ...)
#   IMAGE_TAG       default latest
#   ENGINE          container CLI, default podman (with runc, cgroupfs and images/test/containers.conf)
#   PIP             pip used to fetch wheels on the host, default .venv/bin/pip
#   CONSTRAINTS_keystone   constraints file, default examples/keystone/constraints.txt
#   PYC_INVALIDATION_MODE  passed to the service Dockerfiles (timestamp, checked-hash, unchecked-hash)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/work/images"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/kolla-entry}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
PIP="${PIP:-$ROOT/.venv/bin/pip}"
DEBOOTSTRAP_IMAGE=localhost/kolla-entry-debootstrap:bookworm
# Packages the base needs; baking them into the debootstrap root keeps the image build off the Debian mirror.
DEBOOTSTRAP_INCLUDE=python3,python3-venv,dumb-init
# Builds use `ulimit -n` of the host; podman's default ulimits do not work in this VM.
NOFILE="$(ulimit -n)"

export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/images/test/containers.conf}"

engine() {
    if [ -n "${ENGINE:-}" ]; then
        "$ENGINE" "$@"
    else
        podman --runtime runc --cgroup-manager cgroupfs "$@"
    fi
}

say() {
    printf '[images] %s\n' "$*" >&2
}

# The debootstrap base, as a cached tarball and a local image.
debootstrap_base() {
    local tarball="$WORK/cache/bookworm-minbase-${DEBOOTSTRAP_INCLUDE//,/-}.tar"
    if engine image exists "$DEBOOTSTRAP_IMAGE"; then
        return
    fi
    if [ ! -s "$tarball" ]; then
        local dir="$WORK/cache/rootfs.tmp"
        rm -rf "$dir"
        mkdir -p "$WORK/cache"
        say "debootstrap bookworm (minbase + $DEBOOTSTRAP_INCLUDE) into $dir"
        debootstrap --variant=minbase --include="$DEBOOTSTRAP_INCLUDE" bookworm "$dir" >"$WORK/cache/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/cache/debootstrap.log" >&2; exit 2; }
        # The downloaded .debs and package lists are half the size and useless in an image.
        rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/debootstrap
        tar -C "$dir" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$dir"
    fi
    say "importing $tarball as $DEBOOTSTRAP_IMAGE"
    engine import --quiet - "$DEBOOTSTRAP_IMAGE" <"$tarball" >/dev/null
}

# Context of Dockerfile.base: the kolla-entry wheel, built from a clean copy of the sources (an in-tree
# build/ folder could carry stale modules into the wheel), and its dependencies' wheels.
base_context() {
    local ctx="$WORK/context/base" src="$WORK/context/base-src"
    rm -rf "$ctx" "$src"
    mkdir -p "$ctx/wheels" "$src"
    cp -a "$ROOT/pyproject.toml" "$ROOT/kolla_entry" "$src/"
    [ -f "$ROOT/README.md" ] && cp "$ROOT/README.md" "$src/"
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    "$PIP" wheel --quiet --wheel-dir "$ctx/wheels" "$src" >"$WORK/context/base-wheels.log" 2>&1 \
        || { tail -20 "$WORK/context/base-wheels.log" >&2; exit 2; }
    rm -rf "$src"
    echo "$ctx"
}

# Context of images/<service>/Dockerfile: the service's wheels (cached per constraints file) and its
# constraints, plus any files the Dockerfile copies from images/<service>/.
service_context() {
    local service="$1"
    local ctx="$WORK/context/$service"
    local var="CONSTRAINTS_$service"
    local constraints="${!var:-$ROOT/examples/$service/constraints.txt}"
    [ -f "$constraints" ] || { say "missing constraints file $constraints"; exit 2; }
    local key
    key="$(cat "$constraints" "$ROOT/images/$service/requirements.txt" | sha256sum | cut -c1-16)"
    local wheels="$WORK/wheels/$service-$key"
    if [ ! -d "$wheels" ]; then
        say "fetching $service wheels into $wheels"
        "$PIP" wheel --quiet --wheel-dir "$wheels.tmp" -c "$constraints" \
            -r "$ROOT/images/$service/requirements.txt" >"$WORK/wheels/$service.log" 2>&1 \
            || { tail -20 "$WORK/wheels/$service.log" >&2; exit 2; }
        mv "$wheels.tmp" "$wheels"
    fi
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -a "$ROOT/images/$service/." "$ctx/"
    cp "$constraints" "$ctx/constraints.txt"
    # A hard-link copy: cheap, and podman sends the context by content anyway.
    cp -al "$wheels" "$ctx/wheels"
    echo "$ctx"
}

build_base() {
    local base="${BASE:-}"
    if [ -z "$base" ]; then
        debootstrap_base
        base="$DEBOOTSTRAP_IMAGE"
    fi
    local ctx
    ctx="$(base_context)"
    say "building $IMAGE_PREFIX-base:$IMAGE_TAG from $base"
    image_build "$IMAGE_PREFIX-base:$IMAGE_TAG" "$WORK/build-base.log" \
        --build-arg "BASE=$base" -f "$ROOT/Dockerfile.base" "$ctx"
}

build_service() {
    local service="$1" ctx
    ctx="$(service_context "$service")"
    say "building $IMAGE_PREFIX-$service:$IMAGE_TAG"
    local args=(--build-arg "BASE_IMAGE=$IMAGE_PREFIX-base:$IMAGE_TAG")
    [ -z "${PYC_INVALIDATION_MODE:-}" ] || args+=(--build-arg "PYC_INVALIDATION_MODE=$PYC_INVALIDATION_MODE")
    image_build "$IMAGE_PREFIX-$service:$IMAGE_TAG" "$WORK/build-$service.log" \
        "${args[@]}" -f "$ctx/Dockerfile" "$ctx"
}

# image_build TAG LOG BUILD-ARGS...: build, then drop the image TAG pointed to before (with its untagged
# parent layers) so repeated local runs do not pile up storage; the layer cache of the new image stays.
image_build() {
    local tag="$1" log="$2" old new
    shift 2
    old="$(engine image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
    engine build --ulimit "nofile=$NOFILE:$NOFILE" -t "$tag" "$@" >"$log" 2>&1 \
        || { tail -30 "$log" >&2; exit 2; }
    new="$(engine image inspect --format '{{.Id}}' "$tag")"
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
        engine rmi "$old" >/dev/null 2>&1 || true
    fi
}

main() {
    mkdir -p "$WORK/wheels" "$WORK/context"
    local services=("$@")
    [ "${#services[@]}" -gt 0 ] || services=(keystone)
    build_base
    for service in "${services[@]}"; do
        build_service "$service"
    done
}

main "$@"
