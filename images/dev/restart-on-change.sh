#!/bin/sh
# Dev images only (images/Dockerfile's `operator-dev` target that Tilt builds): run "$@" and
# restart it each time Tilt's live_update touches $RESTART_FILE after syncing code, because
# neither kopf nor the app reloads code by itself. Production targets have no such wrapper.
set -u
RESTART_FILE="${RESTART_FILE:-/tmp/.restart-proc}"
child=
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit $?' TERM INT
stamp() { stat -c %Y "$RESTART_FILE" 2>/dev/null || echo 0; }
while :; do
    seen=$(stamp)
    "$@" &
    child=$!
    while kill -0 "$child" 2>/dev/null && [ "$(stamp)" = "$seen" ]; do
        sleep 1
    done
    if ! kill -0 "$child" 2>/dev/null; then
        wait "$child"
        exit $?
    fi
    echo "restart-on-change: $RESTART_FILE changed, restarting $1" >&2
    kill -TERM "$child"
    wait "$child"
done
