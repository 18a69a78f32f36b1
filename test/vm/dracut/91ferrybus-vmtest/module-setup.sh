#!/bin/bash
# dracut module "ferrybus-vmtest": the VM boot test's client and probes (scripts/vm-test.sh).
# Only included when asked for (-m / --add).

check() {
    return 255
}

depends() {
    echo ferrybus
    return 0
}

install() {
    inst_simple /usr/lib/ferrybus-vmtest/vm-client.mjs
    inst_simple "$systemdsystemunitdir/vmtest-client.service"
    inst_simple "$systemdsystemunitdir/vmtest-initrd-probe.service"
    inst_simple /etc/systemd/system/ferrybus.service.d/vmtest.conf
    # The system bus policy that lets the test client own its name (system.conf allows nothing).
    inst_simple /usr/share/dbus-1/system.d/org.ferrybus.VmTest.conf
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target vmtest-client.service
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target vmtest-initrd-probe.service
    # Phase 4b, in the shutdown root after dracut's unmount loop.
    inst_hook shutdown 90 "$moddir/vmtest-exitrd.sh"
}
