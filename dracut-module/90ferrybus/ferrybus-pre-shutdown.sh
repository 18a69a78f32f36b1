#!/bin/sh
# Sourced by dracut's shutdown script in the shutdown root, before it kills every process that
# still references /oldroot. Hands the ferrybus daemon off into this root (same PID) so that it
# holds nothing on /oldroot and serves until poweroff. Never fails the shutdown.
_ferrybus_pre_shutdown() {
    [ -x /usr/bin/node ] && [ -f /usr/lib/ferrybus/ferrybus.cjs ] || return 0
    # The daemon resolves /proc/<our pid>/root in its own root: make sure it has a procfs.
    /usr/lib/ferrybus/ferrybus-roots expose-proc || return 0
    # /run here is the old /run, bound in by systemd-shutdown: `ferrybus handoff` finds the bus
    # by default (/run/ferrybus/bus, then the system bus, /run/dbus/system_bus_socket).
    /usr/bin/node /usr/lib/ferrybus/ferrybus.cjs handoff --root / && return 0
    # /oldsys/run is the same tmpfs seen from the old /run's mount point, should /run be another.
    for _ferrybus_sock in /oldsys/run/dbus/system_bus_socket /oldsys/run/ferrybus/bus; do
        [ -S "$_ferrybus_sock" ] || continue
        if /usr/bin/node /usr/lib/ferrybus/ferrybus.cjs handoff --root / --address "unix:path=$_ferrybus_sock"; then
            return 0
        fi
    done
    warn "ferrybus: could not hand the bus off into the shutdown root"
    return 0
}
_ferrybus_pre_shutdown
unset -f _ferrybus_pre_shutdown
unset _ferrybus_sock
