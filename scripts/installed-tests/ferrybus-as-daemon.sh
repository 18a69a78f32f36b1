#!/bin/sh
# Starts ferrybus the way libdbus's installed tests start a bus: they run
# "$DBUS_TEST_DAEMON --config-file=... --nofork --print-address=1 [--address=...]
# --systemd-activation" and kill the pid they spawned with SIGTERM, so this must exec
# (same pid) and pass every flag through unchanged: a flag ferrybus rejects is a result.
# Uses the compiled dist/ of the checkout this script sits in (npx tsc -p tsconfig.build.json).
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
root=$(dirname -- "$(dirname -- "$here")")
exec node "$root/dist/src/cli/main.js" daemon "$@"
