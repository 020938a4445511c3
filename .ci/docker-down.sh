#!/bin/sh
# Stop the dockerd that .ci/docker-up.sh started, by the PID it recorded (never by name).
# Images and volumes stay on disk, so the next run reuses what this one built.
set -eu

STATE=${HUB_EXT_DOCKER_STATE:-"$(cd "$(dirname "$0")" && pwd)/.docker"}
PIDFILE="$STATE/dockerd.pid"

if [ ! -f "$PIDFILE" ]; then
    echo "docker-down: no $PIDFILE; nothing of ours to stop"
    exit 0
fi
pid=$(cat "$PIDFILE")
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 30 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "docker-down: dockerd $pid still running after 30s; sending KILL" >&2
        kill -KILL "$pid"
    fi
    echo "docker-down: dockerd $pid stopped"
else
    echo "docker-down: dockerd $pid was not running"
fi
rm -f "$PIDFILE"
