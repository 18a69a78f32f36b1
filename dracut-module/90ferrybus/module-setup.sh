#!/bin/bash
# dracut module "ferrybus": the ferrybus D-Bus bus in the initrd, and in the shutdown root
# (the same image, unpacked into /run/initramfs by dracut-shutdown.service at poweroff).
#
# Installs: the Node.js runtime at /usr/bin/node (from ${FERRYBUS_NODE:-$(command -v node)}),
# the bundle /usr/lib/ferrybus/ferrybus.mjs with koffi beside it, ferrybus.service (wanted by
# initrd.target), a pre-pivot hook that asks for a shutdown root, and a pre-shutdown hook that
# re-roots the bus into the shutdown root before dracut kills what still references /oldroot.
#
# Node and ferrybus must sit at the SAME paths in every root: a handoff execs
# process.execPath with process.argv[1] inside the target root.

# Where `make install`/`npm run install-files` put ferrybus (the units name these paths).
ferrybus_libdir=/usr/lib/ferrybus

_ferrybus_node() {
    local node="${FERRYBUS_NODE:-}"
    [[ -n $node ]] || node=$(command -v node 2> /dev/null)
    [[ -n $node ]] && echo "$node"
}

# called by dracut
check() {
    [[ -f $dracutsysrootdir$ferrybus_libdir/ferrybus.mjs ]] || return 1
    [[ -n $(_ferrybus_node) ]] || return 1
    return 0
}

# called by dracut
depends() {
    # systemd: ferrybus.service is a systemd unit; shutdown: the shutdown root and its hooks.
    echo systemd shutdown
    return 0
}

# called by dracut
install() {
    local node f
    node=$(_ferrybus_node) || {
        derror "ferrybus: no node binary (set FERRYBUS_NODE)"
        return 1
    }
    # inst_binary pulls in the libraries node links against (libstdc++, libgcc_s, libm, libc).
    # The units call /usr/bin/node, so that is where it goes, wherever it came from.
    inst_binary "$(readlink -f "$node")" /usr/bin/node

    inst_simple "$ferrybus_libdir/ferrybus.mjs"
    inst_simple "$ferrybus_libdir/ferrybus-roots"
    # koffi: package.json, its JS entry points and the linux_x64 native build.
    while IFS= read -r -d '' f; do
        inst_simple "${f#"$dracutsysrootdir"}"
    done < <(find "$dracutsysrootdir$ferrybus_libdir/node_modules" -type f -print0)
    # What the helpers and hooks call (most are in the base image already).
    inst_multiple stat mount mkdir tr head

    inst_simple "$systemdsystemunitdir/ferrybus.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target ferrybus.service

    # A shutdown root is only unpacked when /run/initramfs/.need_shutdown exists at shutdown.
    inst_hook pre-pivot 50 "$moddir/ferrybus-need-shutdown.sh"
    # In the shutdown root, before `killall_proc_mountpoint /oldroot`.
    inst_hook pre-shutdown 50 "$moddir/ferrybus-pre-shutdown.sh"
}
