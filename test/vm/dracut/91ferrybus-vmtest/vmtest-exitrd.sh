#!/bin/sh
# VM boot test, phase 4b: in the shutdown root, after /oldroot was unmounted, a client calls the
# initrd client through the bus and lists the names. Sourced by dracut's shutdown script;
# a shutdown hook must succeed (else it is retried), so the result only goes to the console.
/usr/bin/node /usr/lib/ferrybus-vmtest/vm-client.mjs probe exitrd || :
