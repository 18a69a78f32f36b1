#!/bin/sh
# ferrybus lives until the last moment of shutdown, in the shutdown root: ask dracut-shutdown
# to unpack this initramfs into /run/initramfs at shutdown (it does so only when this marker
# exists). Sourced by dracut-pre-pivot, which provides need_shutdown() from dracut-lib.sh.
mkdir -p /run/initramfs
need_shutdown
