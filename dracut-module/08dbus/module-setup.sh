#!/bin/bash
# dracut module "dbus", as ferrybus ships it: the meta module that says which bus an initramfs
# gets, with ferrybus as a third choice next to dbus-daemon and dbus-broker.
#
# dracut modules that need a bus (systemd-hostnamed, systemd-timedated, systemd-resolved, ...)
# say `depends() { echo dbus; }`. dracut's own meta module, 09dbus (19dbus in dracut-ng), turns
# that into dbus-daemon or dbus-broker and has no setting for another bus: with neither installed
# it picks dbus-daemon, whose check fails, and every module that needs a bus is left out.
#
# dracut finds a module by name through the glob modules.d/??NAME and takes the first match, and
# installs a name once, from the first directory that has it; so this directory, 08dbus, answers
# for "dbus" and dracut's 09dbus stays installed and unused. Nothing of dracut is modified, and
# where ferrybus is not the system bus this module chooses exactly as 09dbus does.

# called by dracut
check() {
    # A meta module: only included when another module depends on it.
    return 255
}

# called by dracut
depends() {
    local _module
    # A bus module already in the image wins (one system bus per initramfs).
    for _module in ferrybus dbus-daemon dbus-broker; do
        if dracut_module_included "$_module"; then
            echo "$_module"
            return 0
        fi
    done
    # Asked for by name (-m, --add, add_dracutmodules), though not yet checked.
    for _module in ferrybus dbus-daemon dbus-broker; do
        if [[ " $dracutmodules $add_dracutmodules $force_add_dracutmodules " == *" $_module "* ]]; then
            echo "$_module"
            return 0
        fi
    done
    # ferrybus is this system's dbus.service (`systemctl enable ferrybus.service`).
    if [[ $(readlink "$dracutsysrootdir${systemdsystemconfdir:-/etc/systemd/system}/dbus.service" 2> /dev/null) == */ferrybus.service ]]; then
        echo ferrybus
        return 0
    fi
    # Otherwise what dracut's 09dbus does.
    if find_binary dbus-broker &> /dev/null; then
        echo dbus-broker
    else
        echo dbus-daemon
    fi
    return 0
}

# called by dracut
install() {
    # Nothing of its own: the bus module chosen above installs the bus.
    :
}
