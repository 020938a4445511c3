#!/bin/sh
# Start a Docker engine for the Docker tier's tests and images, in the background.
#
#   .ci/docker-up.sh            install docker.io (Debian) if missing, start dockerd, wait for it
#   .ci/docker-down.sh          stop the dockerd this script started (by its PID)
#
# An engine that already answers (a developer's machine) is used as it is and left alone.
# Environment: HUB_EXT_DOCKER_STATE (default .ci/.docker) holds dockerd's PID file and log;
# HUB_EXT_DOCKER_TIMEOUT (seconds, default 60) bounds the wait.
set -eu

STATE=${HUB_EXT_DOCKER_STATE:-"$(cd "$(dirname "$0")" && pwd)/.docker"}
TIMEOUT=${HUB_EXT_DOCKER_TIMEOUT:-60}
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"

if docker info >/dev/null 2>&1; then
    echo "docker-up: an engine already answers; using it"
    exit 0
fi

# docker.io for the engine, debootstrap for course_images/build.sh's root filesystem
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    echo "docker-up: installing docker.io and debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends docker.io iptables ca-certificates debootstrap
fi

mkdir -p "$STATE"
[ -f "$STATE/.gitignore" ] || echo "*" >"$STATE/.gitignore"  # run-time files only
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "docker-up: dockerd $(cat "$PIDFILE") is starting; waiting for it"
else
    # containerd is started by dockerd itself (a child it manages) when none runs.
    nohup dockerd --host unix:///var/run/docker.sock >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    echo "docker-up: dockerd started, pid $(cat "$PIDFILE"), log $LOG"
fi

waited=0
until docker info >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "docker-up: dockerd exited; its log:" >&2
        tail -n 30 "$LOG" >&2
        rm -f "$PIDFILE"
        exit 1
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then
        echo "docker-up: dockerd did not answer within ${TIMEOUT}s; its log:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
echo "docker-up: engine ready ($(docker version --format '{{.Server.Version}}'))"
