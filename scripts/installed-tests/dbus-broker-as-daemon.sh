#!/bin/sh
# Starts dbus-broker the way libdbus's installed tests start a bus ("$DBUS_TEST_DAEMON
# --config-file=... --nofork --print-address=1 [--address=...] --systemd-activation"); the
# work is in dbus-broker-as-daemon.py beside this file, which execs dbus-broker-launch in
# this same pid (the tests stop "the daemon" with SIGTERM to the pid they spawned).
# dbus-broker-launch logs only to /run/systemd/journal/socket and will not start without it;
# where no journal runs, root gets a private mount namespace in which the helper provides one.
set -e
# A caller may start us with stdin, stdout or stderr closed (test-dbus-daemon-fork.sh does);
# then the listening socket the helper binds would land on one of them and be replaced by
# /dev/null when it daemonizes. dbus-daemon fills them with /dev/null too.
[ -e /proc/$$/fd/0 ] || exec 0</dev/null
[ -e /proc/$$/fd/1 ] || exec 1>/dev/null
[ -e /proc/$$/fd/2 ] || exec 2>/dev/null
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
python=/usr/bin/python3
[ -x "$python" ] || python=python3
if [ "$(id -u)" = 0 ] && [ ! -e /run/systemd/journal/socket ]; then
  DBUS_BROKER_AS_DAEMON_NS=1 exec unshare -m --propagation private -- \
    "$python" "$here/dbus-broker-as-daemon.py" "$@"
fi
exec "$python" "$here/dbus-broker-as-daemon.py" "$@"
