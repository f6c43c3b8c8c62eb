#!/usr/bin/env bash
# Build the kolla-entry base image and the service images without any registry (issue #5).
#
#   images/build.sh [IMAGE...]          default: keystone; `all`: every OpenStack service
#
# IMAGE: an OpenStack service (images/<service>/, built from images/service.Dockerfile) or an
# infrastructure image (postgres, mariadb, rabbitmq, memcached: images/<name>/Dockerfile, Debian packages).
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
#   DEBOOTSTRAP_IMAGE  name of that import, default localhost/kolla-entry-debootstrap:bookworm
#   IMAGE_PREFIX    image names, default localhost/kolla-entry (-> localhost/kolla-entry-base:latest, ...)
#   IMAGE_TAG       default latest
#   ENGINE          container CLI, default podman (with runc, cgroupfs and images/test/containers.conf)
#   PIP             pip used to fetch wheels on the host, default a venv of /usr/bin/python3 in work/images/
#   CONSTRAINTS     constraints file, default images/constraints.txt (images/resolve.sh writes it)
#   PYC_INVALIDATION_MODE  passed to the service Dockerfiles (timestamp, checked-hash, unchecked-hash)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/work/images"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/kolla-entry}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
# The host pip runs on the images' Python (Debian bookworm's /usr/bin/python3): environment markers such as
# python_full_version < "3.11.3" (redis -> async-timeout) then resolve as they will inside the image.
PIP="${PIP:-$WORK/pip-venv/bin/pip}"
DEBOOTSTRAP_IMAGE="${DEBOOTSTRAP_IMAGE:-localhost/kolla-entry-debootstrap:bookworm}"
# Packages the base needs; baking them into the debootstrap root keeps the image build off the Debian mirror.
DEBOOTSTRAP_INCLUDE=python3,python3-venv,dumb-init
# Builds use `ulimit -n` of the host; podman's default ulimits do not work in this VM.
NOFILE="$(ulimit -n)"
CONSTRAINTS="${CONSTRAINTS:-$ROOT/images/constraints.txt}"
SERVICES_ALL="barbican cinder designate glance horizon ironic keystone manila neutron nova placement"
INFRA_ALL="postgres mariadb rabbitmq memcached"

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
    # Cached by the digest of kolla-entry's sources: the same sources give the same wheel files, so podman's
    # layer cache keeps the base (and every service image on it) when nothing changed.
    local key
    key="$(cd "$ROOT" && find pyproject.toml kolla_entry -name __pycache__ -prune -o -type f -print \
        | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
    local ctx="$WORK/context/base-$key" src="$WORK/context/base-src"
    if [ -d "$ctx/wheels" ]; then
        echo "$ctx"
        return
    fi
    rm -rf "$WORK"/context/base-* "$src"
    mkdir -p "$ctx.tmp/wheels" "$src"
    cp -a "$ROOT/pyproject.toml" "$ROOT/kolla_entry" "$src/"
    # The wheel's long description is not worth a rebuild of every image whenever the README changes.
    echo "kolla-entry: see the repository's README.md." >"$src/README.md"
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    "$PIP" wheel --quiet --wheel-dir "$ctx.tmp/wheels" "$src" >"$WORK/context/base-wheels.log" 2>&1 \
        || { tail -20 "$WORK/context/base-wheels.log" >&2; exit 2; }
    rm -rf "$src"
    mv "$ctx.tmp" "$ctx"
    echo "$ctx"
}

# The shared wheel pool: every wheel any image needed so far, pinned by images/constraints.txt (one pool per
# constraints file, so a new resolve starts a new pool). images/resolve.sh's wheels seed it when present.
wheel_pool() {
    local key
    key="$(sha256sum <"$CONSTRAINTS" | cut -c1-16)"
    local pool="$WORK/wheels/pool-$key"
    if [ ! -d "$pool" ]; then
        mkdir -p "$pool"
        [ ! -d "$WORK/resolve-wheels" ] || cp -al "$WORK/resolve-wheels/." "$pool/"
    fi
    echo "$pool"
}

# Context of images/service.Dockerfile for one service: the service's wheels (taken from the pool offline,
# fetched into the pool from PyPI only when missing), the constraints, images/<service>/ and its setup.sh.
service_context() {
    local service="$1"
    local ctx="$WORK/context/$service" pool wheels log="$WORK/wheels/$service.log"
    [ -f "$ROOT/images/$service/requirements.txt" ] || { say "no images/$service/requirements.txt"; exit 2; }
    pool="$(wheel_pool)"
    wheels="$WORK/wheels/$service.tmp"
    rm -rf "$wheels"
    local pin=(-c "$CONSTRAINTS" -r "$ROOT/images/$service/requirements.txt")
    if ! "$PIP" download --quiet --no-index --find-links "$pool" --dest "$wheels" "${pin[@]}" >"$log" 2>&1; then
        say "fetching $service wheels into $pool"
        rm -rf "$wheels"
        "$PIP" wheel --quiet --prefer-binary --wheel-dir "$pool" "${pin[@]}" >"$log" 2>&1 \
            || { tail -20 "$log" >&2; exit 2; }
        "$PIP" download --quiet --no-index --find-links "$pool" --dest "$wheels" "${pin[@]}" >>"$log" 2>&1 \
            || { tail -20 "$log" >&2; exit 2; }
    fi
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -a "$ROOT/images/$service/." "$ctx/"
    [ -f "$ctx/setup.sh" ] || echo ': nothing to set up' >"$ctx/setup.sh"
    cp "$ROOT/images/service.Dockerfile" "$ctx/Dockerfile"
    cp "$CONSTRAINTS" "$ctx/constraints.txt"
    mv "$wheels" "$ctx/wheels"
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
    local args=(--build-arg "BASE_IMAGE=$IMAGE_PREFIX-base:$IMAGE_TAG" --build-arg "SERVICE=$service")
    local line
    while IFS= read -r line; do
        [[ "$line" =~ ^[A-Z_]+=.+ ]] && args+=(--build-arg "$line")
    done <"$ctx/image.env"
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

# Infrastructure images: Debian's packages on the debootstrap base (the Debian mirror is used during the build).
build_infra() {
    local name="$1" ctx="$WORK/context/$1"
    rm -rf "$ctx"
    cp -a "$ROOT/images/$name" "$ctx"
    local base="${BASE:-}"
    if [ -z "$base" ]; then
        debootstrap_base
        base="$DEBOOTSTRAP_IMAGE"
    fi
    say "building $IMAGE_PREFIX-$name:$IMAGE_TAG from $base"
    # The host's network: apt reaches the Debian mirror without a CNI bridge.
    image_build "$IMAGE_PREFIX-$name:$IMAGE_TAG" "$WORK/build-$name.log" --network host \
        --build-arg "BASE_IMAGE=$base" -f "$ctx/Dockerfile" "$ctx"
}

host_pip() {
    if [ "$PIP" = "$WORK/pip-venv/bin/pip" ] && [ ! -x "$PIP" ]; then
        /usr/bin/python3 -m venv "$WORK/pip-venv"
        "$PIP" install --quiet --upgrade pip
    fi
}

main() {
    mkdir -p "$WORK/wheels" "$WORK/context"
    host_pip
    local services=() arg
    [ "$#" -gt 0 ] || set -- keystone
    for arg in $(for arg in "$@"; do if [ "$arg" = all ]; then echo $SERVICES_ALL; else echo "$arg"; fi; done); do
        [[ " ${services[*]} " == *" $arg "* ]] || services+=("$arg")
    done
    build_base
    for service in "${services[@]}"; do
        [ "$service" != base ] || continue
        case " $SERVICES_ALL $INFRA_ALL " in
            *" $service "*) ;;
            *) say "unknown image $service (services: $SERVICES_ALL; infrastructure: $INFRA_ALL)"; exit 2 ;;
        esac
        local started=$SECONDS
        if [[ " $INFRA_ALL " == *" $service "* ]]; then
            build_infra "$service"
        else
            build_service "$service"
        fi
        say "$service built in $((SECONDS - started)) s: $(engine image inspect --format '{{.Size}}' \
            "$IMAGE_PREFIX-$service:$IMAGE_TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
    done
}

main "$@"
