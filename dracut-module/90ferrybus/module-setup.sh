#!/bin/bash
# dracut module "ferrybus": the ferrybus D-Bus system bus in the initrd, and in the shutdown root
# (the same image, unpacked into /run/initramfs by dracut-shutdown.service at poweroff).
#
# Installs: the Node.js runtime at /usr/bin/node (from ${FERRYBUS_NODE:-$(command -v node)}),
# the bundle /usr/lib/ferrybus/ferrybus.cjs (with ferrybus-program.cjs, its code cache, ferrybus-vendor.cjs and koffi beside
# it), ferrybus.service and
# ferrybus.socket enabled as in the real root (the aliases dbus.service and dbus.socket), the
# system bus configuration (system.conf, system.d, system-services, the messagebus user), a
# pre-pivot hook that asks for a shutdown root, and a pre-shutdown hook that re-roots the bus into
# the shutdown root before dracut kills what still references /oldroot.
#
# Node and ferrybus must sit at the SAME paths in every root: a handoff execs
# process.execPath with process.argv[1] inside the target root. The unit files must be the SAME
# in every root too: after switch-root a running unit whose file is missing is stopped.
#
# Modules that need a bus (systemd-hostnamed, systemd-timedated, ...) depend on "dbus"; the
# module "dbus" ferrybus ships (08dbus) resolves that to this module where ferrybus is the
# system bus (see its module-setup.sh).

# Where `make install`/`npm run install-files` put ferrybus (the units name these paths).
ferrybus_libdir=/usr/lib/ferrybus

_ferrybus_node() {
    local node="${FERRYBUS_NODE:-}"
    [[ -n $node ]] || node=$(command -v node 2> /dev/null)
    [[ -n $node ]] && echo "$node"
}

# ferrybus is this system's bus: `systemctl enable ferrybus.service` made dbus.service its alias.
_ferrybus_is_system_bus() {
    local link
    link=$(readlink "$dracutsysrootdir${systemdsystemconfdir:-/etc/systemd/system}/dbus.service" 2> /dev/null) || return 1
    [[ ${link##*/} == ferrybus.service ]]
}

# called by dracut
check() {
    [[ -f $dracutsysrootdir$ferrybus_libdir/ferrybus.cjs ]] || return 1
    [[ -f $dracutsysrootdir$ferrybus_libdir/ferrybus-program.cjs ]] || return 1
    [[ -f $dracutsysrootdir$ferrybus_libdir/ferrybus-vendor.cjs ]] || return 1
    [[ -n $(_ferrybus_node) ]] || return 1
    # Where ferrybus is the system bus, every initramfs gets it: the initrd's bus must be the
    # same unit as the real root's. Elsewhere only when asked for (-m, --add, or through "dbus").
    _ferrybus_is_system_bus && return 0
    return 255
}

# called by dracut
depends() {
    # systemd: the units; shutdown: the shutdown root and its hooks.
    echo systemd shutdown
    return 0
}

# called by dracut
install() {
    local node f
    # One system bus per initramfs, as dracut's dbus-daemon module refuses dbus-broker.
    if dracut_module_included dbus-daemon || dracut_module_included dbus-broker; then
        derror "ferrybus: the initramfs already has a system bus (dracut module dbus-daemon or dbus-broker)"
        return 1
    fi
    if ! _ferrybus_is_system_bus; then
        # The initrd's dbus.service and dbus.socket would be ferrybus's, the real root's another
        # bus's: at switch-root both units change meaning and the socket is bound anew.
        dwarn "ferrybus: dbus.service of this system is not ferrybus.service; the initrd's system bus will not survive switch-root (systemctl enable ferrybus.service first)"
    fi
    node=$(_ferrybus_node) || {
        derror "ferrybus: no node binary (set FERRYBUS_NODE)"
        return 1
    }
    # inst_binary pulls in the libraries node links against (libstdc++, libgcc_s, libm, libc).
    # The units call /usr/bin/node, so that is where it goes, wherever it came from.
    inst_binary "$(readlink -f "$node")" /usr/bin/node

    # The entry, the program it loads, when the bundle has one the program's V8 code cache, and
    # the packages the program loads late (the command-line parser, the logger).
    # ferrybus.mjs is the entry of earlier releases: an image started by such a command line
    # execs it again in the shutdown root.
    inst_simple "$ferrybus_libdir/ferrybus.cjs"
    [[ -f $dracutsysrootdir$ferrybus_libdir/ferrybus.mjs ]] && inst_simple "$ferrybus_libdir/ferrybus.mjs"
    inst_simple "$ferrybus_libdir/ferrybus-program.cjs"
    inst_simple "$ferrybus_libdir/ferrybus-vendor.cjs"
    if [[ -f $dracutsysrootdir$ferrybus_libdir/ferrybus-program.cache ]]; then
        inst_simple "$ferrybus_libdir/ferrybus-program.cache"
    fi
    inst_simple "$ferrybus_libdir/ferrybus-roots"
    # koffi: package.json, its JS entry points and the linux_x64 native build.
    while IFS= read -r -d '' f; do
        inst_simple "${f#"$dracutsysrootdir"}"
    done < <(find "$dracutsysrootdir$ferrybus_libdir/node_modules" -type f -print0)
    # What the helpers and hooks call (most are in the base image already); busctl for people.
    inst_multiple stat mount mkdir tr head systemctl
    inst_multiple -o busctl

    # The units, enabled as on the real root: dbus.service -> ferrybus.service and
    # dbus.socket -> ferrybus.socket, wanted by sysinit.target and sockets.target.
    inst_multiple "$systemdsystemunitdir/ferrybus.service" "$systemdsystemunitdir/ferrybus.socket"
    $SYSTEMCTL -q --root "$initdir" enable ferrybus.service
    # Before initrd.target, whoever else pulls it in.
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target ferrybus.service

    # The system bus's configuration, read by `ferrybus daemon --system`: dbus-daemon's stock
    # system.conf, the policies of what runs in the initrd (other modules add theirs, as for
    # hostname1), systemd's activation file, and ferrybus's own policy (Supervisor1 for root).
    inst_dir "$dbus"
    inst_dir "$dbussystem"
    inst_dir "$dbussystemservices"
    inst_dir "$dbusconfdir"
    inst_dir "$dbussystemconfdir"
    inst_multiple -o \
        "$dbus"/system.conf \
        "$dbussystem"/org.freedesktop.systemd1.conf \
        "$dbussystem"/org.ferrybus.Supervisor1.conf \
        "$dbussystemservices"/org.freedesktop.systemd1.service \
        "$sysusers"/dbus.conf
    if [[ $hostonly ]]; then
        inst_multiple -H -o "$dbusconfdir"/system.conf "$dbusconfdir"/system-local.conf
    fi
    # The messagebus user and group that system.conf and policies name (systemd-sysusers would
    # create them from dbus.conf only where that module is included).
    grep -q '^messagebus:' "$initdir/etc/passwd" 2> /dev/null \
        || grep '^messagebus:' "$dracutsysrootdir/etc/passwd" >> "$initdir/etc/passwd"
    grep -q '^messagebus:' "$initdir/etc/group" 2> /dev/null \
        || grep '^messagebus:' "$dracutsysrootdir/etc/group" >> "$initdir/etc/group"

    # A shutdown root is only unpacked when /run/initramfs/.need_shutdown exists at shutdown.
    inst_hook pre-pivot 50 "$moddir/ferrybus-need-shutdown.sh"
    # In the shutdown root, before `killall_proc_mountpoint /oldroot`.
    inst_hook pre-shutdown 50 "$moddir/ferrybus-pre-shutdown.sh"
}
