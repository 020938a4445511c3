#!/bin/sh
# Build the course images from a local Debian root filesystem: no image registry needed.
#
#   course_images/build.sh                    every course image (base ds101 stat200 analytics)
#   course_images/build.sh base ds101         these (and what they are built on)
#   course_images/build.sh hub                the hub's image (make hub-image), on the base image;
#   HUB_EXT_HUB_BASE=quay.io/jupyterhub/k8s-hub:4.4.0 course_images/build.sh hub
#                                             on the chart's own hub image (pulled first), for a
#                                             real zero-to-jupyterhub deployment
#   HUB_EXT_REBUILD=1 course_images/build.sh  rebuild even what is up to date
#
# 1. rootfs: `debootstrap --variant=minbase` of $DEBIAN_SUITE, then `docker import`;
# 2. each image: `docker build` of its folder (Dockerfile, requirements.txt, lock.txt).
#
# Idempotent: an image whose recipe (its folder, common/, versions.env, the image it is
# built on; the hub_ext sources for analytics) has not changed since it was built is
# reused (label org.hub-ext.recipe). Each image is labelled with its purpose, kernels and
# build date; image ids are recorded in digests.txt and what each image holds (pip freeze,
# dpkg list) in manifests/<image>.txt, so a course can be rebuilt and rerun years later.
#
# Extra CA certificates in /usr/local/share/ca-certificates/*.crt (a TLS-inspecting proxy)
# are given to pip during the build only; they are not added to the images' trust stores.
# Environment: DOCKER (client, default docker), HUB_EXT_DIGESTS (default digests.txt here),
# TMPDIR (where the root filesystem is unpacked, default /var/tmp; needs ~300 MB),
# HUB_EXT_HUB_BASE (the image the hub's image is built on, default the base image).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
. "$HERE/versions.env"
DOCKER=${DOCKER:-docker}
DIGESTS=${HUB_EXT_DIGESTS:-"$HERE/digests.txt"}
REBUILD=${HUB_EXT_REBUILD:-0}
ALL="base ds101 stat200 analytics"
# built when asked for by name only: it needs the kubernetes extra's packages from PyPI
KNOWN="$ALL hub"
HUB_BASE=${HUB_EXT_HUB_BASE:-}
ROOTFS="$IMAGE_PREFIX/debian:$DEBIAN_SUITE-minbase-$IMAGE_TAG"
# The legacy builder works with every client/daemon pair (no buildx plugin needed).
export DOCKER_BUILDKIT=0

say() { printf 'build.sh: %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

image_name() {
    case "$1" in
        base | analytics | hub) echo "$IMAGE_PREFIX/$1:$IMAGE_TAG" ;;
        *) echo "$IMAGE_PREFIX/course-$1:$IMAGE_TAG" ;;
    esac
}
parent_of() {
    case "$1" in
        base | analytics) echo rootfs ;;
        hub) if [ -n "$HUB_BASE" ]; then echo external; else echo base; fi ;;
        *) echo base ;;
    esac
}
image_id() { "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() { "$DOCKER" image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers (start one: .ci/docker-up.sh)"

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/hub-ext-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# ---------------------------------------------------------------- 1. the root filesystem

build_rootfs() {
    if [ -n "$(image_id "$ROOTFS")" ]; then
        say "$ROOTFS: present, reused"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (apt-get install debootstrap)"
    say "$ROOTFS: debootstrap --variant=minbase $DEBIAN_SUITE from $DEBIAN_MIRROR"
    start=$(date +%s)
    root="$WORK/rootfs"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # what an image needs from a chroot, minus caches; apt as docker's debian images set it
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/90hub-ext-no-recommends"
    printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n' \
        >"$root/etc/dpkg/dpkg.cfg.d/90hub-ext-nodoc"
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
        --change "LABEL org.opencontainers.image.title=\"Debian $DEBIAN_SUITE minbase\"" \
        --change "LABEL org.opencontainers.image.created=$created" \
        --change "LABEL org.hub-ext.purpose=\"root filesystem of the hub-ext images (debootstrap --variant=minbase $DEBIAN_SUITE)\"" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        - "$ROOTFS" >/dev/null
    rm -rf "$root"
    say "$ROOTFS: imported in $(($(date +%s) - start))s"
    BUILT="$BUILT rootfs"
}

# ---------------------------------------------------------------- 2. the images

# The build context: the image's folder plus _build/ (pip helper, requirements, lock,
# optional CA files, and for analytics the hub_ext sources).
make_context() {
    ctx="$WORK/ctx-$1"
    mkdir -p "$ctx/_build/ca"
    cp "$HERE/$1/Dockerfile" "$ctx/"
    cp "$HERE/common/pip-install" "$ctx/_build/"
    for f in requirements.txt lock.txt; do
        if [ -f "$HERE/$1/$f" ]; then cp "$HERE/$1/$f" "$ctx/_build/"; else : >"$ctx/_build/$f"; fi
    done
    if [ "$1" = analytics ] || [ "$1" = hub ]; then
        mkdir -p "$ctx/_build/hub_ext"
        (cd "$REPO" && tar -c --exclude=__pycache__ --exclude='*.egg-info' setup.cfg pyproject.toml hub_ext) |
            tar -x -C "$ctx/_build/hub_ext"
        if [ -f "$REPO/README.md" ]; then cp "$REPO/README.md" "$ctx/_build/hub_ext/"; else : >"$ctx/_build/hub_ext/README.md"; fi
    fi
    # the recipe: everything in the context except the CA files, plus the parent image
    recipe=$(cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum |
        { cat; cat "$HERE/versions.env"; echo "$2"; } | sha256sum | cut -c1-16)
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -f "$crt" ] && cp "$crt" "$ctx/_build/ca/"
    done
    echo "$recipe"
}

build_image() {
    name=$(image_name "$1")
    parent=$(parent_of "$1")
    case "$parent" in
        rootfs) parent_ref=$ROOTFS ;;
        external) parent_ref=$HUB_BASE ;;
        *) parent_ref=$(image_name "$parent") ;;
    esac
    parent_id=$(image_id "$parent_ref")
    [ -n "$parent_id" ] || die "$name: its parent $parent_ref is missing"
    recipe=$(make_context "$1" "$parent_id")
    if [ "$REBUILD" != 1 ] && [ "$(image_label "$name" org.hub-ext.recipe)" = "$recipe" ]; then
        say "$name: up to date (recipe $recipe), reused"
        return
    fi
    say "$name: building (recipe $recipe)"
    old_id=$(image_id "$name")
    start=$(date +%s)
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if ! "$DOCKER" build --pull=false --rm --force-rm \
        --build-arg "ROOTFS=$ROOTFS" --build-arg "BASE=$parent_ref" \
        --label "org.opencontainers.image.created=$created" \
        --label "org.opencontainers.image.version=$IMAGE_TAG" \
        --label "org.hub-ext.build-date=$created" \
        --label "org.hub-ext.recipe=$recipe" \
        --label "org.hub-ext.parent=$parent_ref@$parent_id" \
        -t "$name" "$WORK/ctx-$1" >"$WORK/build-$1.log" 2>&1; then
        tail -n 40 "$WORK/build-$1.log" >&2
        die "$name: docker build failed"
    fi
    say "$name: built in $(($(date +%s) - start))s"
    # the image this one replaces, unless a container or another tag still uses it
    if [ -n "$old_id" ] && [ "$old_id" != "$(image_id "$name")" ]; then
        "$DOCKER" image rm "$old_id" >/dev/null 2>&1 || true
    fi
    BUILT="$BUILT $1"
    mkdir -p "$HERE/manifests"
    "$DOCKER" run --rm --network none --entrypoint sh "$name" -c \
        'echo "# pip freeze"; pip freeze --all 2>/dev/null; echo "# dpkg-query"; dpkg-query -W' \
        >"$HERE/manifests/$1.txt"
}

record_digests() {
    {
        echo "# Image ids of the last build on this machine (course_images/build.sh)."
        echo "# image  id  built  recipe"
        for img in rootfs $KNOWN; do
            if [ "$img" = rootfs ]; then name=$ROOTFS; else name=$(image_name "$img"); fi
            id=$(image_id "$name")
            [ -n "$id" ] || continue
            echo "$name  $id  $(image_label "$name" org.opencontainers.image.created)  $(image_label "$name" org.hub-ext.recipe)"
        done
    } >"$DIGESTS"
}

# ---------------------------------------------------------------- main

wanted=${*:-$ALL}
order=""
for img in $wanted; do
    case " $KNOWN " in *" $img "*) ;; *) die "unknown image $img (known: $KNOWN)" ;; esac
    [ "$(parent_of "$img")" = base ] && order="$order base"
    order="$order $img"
done
BUILT=""
build_rootfs
done_list=" "
for img in $order; do
    case "$done_list" in *" $img "*) continue ;; esac
    build_image "$img"
    done_list="$done_list$img "
done
record_digests
say "done; built:${BUILT:- nothing (all reused)}; ids in $DIGESTS"
