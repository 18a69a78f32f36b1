#!/usr/bin/env bash
# What the ferrybus dracut module adds to an initramfs, next to dracut's own dbus-broker module,
# on the Debian 12 root of the VM boot test (scripts/vm-test.sh). Needs root.
#
#   bench/initramfs.sh [--out FILE] [--serial-log FILE] [--boot] [--keep]
#   npm run bench:initramfs -- [same options]
#
# Three images, same kernel, same dracut 059, same compression as the VM test (dracut --zstd,
# i.e. `zstd -15 -q -T0`), same generic module list as the VM test
# (systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules kernel-modules
# shutdown, --no-hostonly --no-early-microcode, --drivers "virtio_pci virtio_blk ext4"):
#
#   baseline     that list alone: no D-Bus module
#   dbus-broker  + "dbus dbus-broker": dracut's 09dbus and 06dbus-broker (which pulls in
#                systemd-sysusers), in a copy of the root with Debian's dbus-broker installed by apt
#   ferrybus     + "dbus ferrybus": 08dbus and 90ferrybus, in a copy of the root with ferrybus
#                installed and enabled as the VM test does it (node, install-files, systemctl
#                enable ferrybus.service ferrybus-root.service ferrybus-shutdown.service)
#
# The base root is the VM test's cached base tarball ($FERRYBUS_VM_CACHE, default
# /var/cache/ferrybus-vm; `npm run test:vm` makes it). Nothing in the cache is written.
# Each image is decompressed and its cpio archive read (bench/initramfs.ts): file count and bytes
# per image, the files each bus adds to the baseline, each of those compressed alone with the
# same zstd -15, grouped (node, bundle, koffi, libraries, configuration, units, ...).
#
# --serial-log FILE  also read the boot timeline from a serial log of the VM test
#                    (default: $FERRYBUS_VM_CACHE/serial.log when it exists)
# --boot             also boot the dbus-broker and the ferrybus image, each with its own root as
#                    disk, without the VM test's probes, under QEMU (TCG: ~2-4 min each), and read
#                    the same milestones from both serial logs (systemd logs to kmsg there)
# --keep             keep the work directory (/var/tmp/ferrybus-initramfs.*)
# Results: bench/results/initramfs-latest.json (--out), and a Markdown table on stdout.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${FERRYBUS_VM_CACHE:-/var/cache/ferrybus-vm}
out=$repo/bench/results/initramfs-latest.json
serial_log=""
boot=0
keep=0
while (($#)); do
    case $1 in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --serial-log) serial_log=$2; shift 2 ;;
    --serial-log=*) serial_log=${1#--serial-log=}; shift ;;
    --boot) boot=1; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "initramfs: unknown option $1" >&2; exit 64 ;;
    esac
done
[[ -n $serial_log || ! -f $cache/serial.log ]] || serial_log=$cache/serial.log

t0=$(date +%s)
say() { echo "initramfs: $* (total $(($(date +%s) - t0)) s)" >&2; }

[ "$(id -u)" = 0 ] || { echo "initramfs: must run as root (chroot, dracut)" >&2; exit 1; }
base_tar=$(ls -t "$cache"/base-*.tar 2> /dev/null | head -n 1) || true
[[ -n $base_tar ]] || { echo "initramfs: no base root in $cache: run \`npm run test:vm\` once" >&2; exit 1; }
for tool in zstd mkfs.ext4; do
    command -v "$tool" > /dev/null || { echo "initramfs: $tool is missing" >&2; exit 1; }
done
((boot == 0)) || command -v qemu-system-x86_64 > /dev/null || { echo "initramfs: --boot needs qemu-system-x86" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ferrybus-initramfs.XXXXXX")
cleanup() { if [ "$keep" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

cd "$repo"
[ -f dist/bundle/ferrybus.cjs ] || node scripts/bundle.mjs >&2
node_modules/.bin/esbuild bench/initramfs.ts --bundle --platform=node --format=esm --target=node20 \
    --log-level=warning --outfile="$work/initramfs-report.mjs"
node_bin=$(readlink -f "${FERRYBUS_NODE:-$(command -v node)}")

base_modules="systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules kernel-modules shutdown"

# chroot_run ROOT CMD...: CMD in ROOT with /proc and /dev, in a private mount namespace.
chroot_run() {
    local root=$1
    shift
    unshare -m -- sh -ec 'root=$1; shift
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        exec chroot "$root" "$@"' sh "$root" "$@"
}

# build NAME ROOT EXTRA_MODULES: the image at ROOT/boot/initrd.img-<kver> (where dracut-shutdown
# looks for it), copied to $work/NAME.img; its dracut module list to $work/NAME.modules.
build() {
    local name=$1 root=$2 extra=$3 kver s e
    kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
    s=$(date +%s%N)
    chroot_run "$root" dracut --quiet --force --no-hostonly --no-early-microcode --zstd \
        -m "$base_modules $extra" --drivers "virtio_pci virtio_blk ext4" \
        "/boot/initrd.img-$kver" "$kver" 2> >(grep -v firmware_class >&2)
    e=$(date +%s%N)
    cp "$root/boot/initrd.img-$kver" "$work/$name.img"
    chroot_run "$root" lsinitrd "/boot/initrd.img-$kver" > "$work/$name.lsinitrd"
    awk '/^dracut modules:/ { f = 1; next } /^=+$/ { if (f) exit } f' "$work/$name.lsinitrd" > "$work/$name.modules"
    printf '%s\t%s\t%s\n' "$name" "$(((e - s) / 1000000))" "$kver" >> "$work/builds"
    say "built $name: $(du -h "$work/$name.img" | cut -f1), modules: $(tr '\n' ' ' < "$work/$name.modules")"
}

has_module() { grep -qx "$2" "$work/$1.modules"; }

# A configured machine for --boot: no first-boot questions, no getty, and a unit that marks
# "booted" on the console once multi-user.target is reached, asks the bus once and powers off.
configure_for_boot() {
    local root=$1 id=$2
    echo ferrybus-initramfs > "$root/etc/hostname"
    echo "$id" > "$root/etc/machine-id"
    echo "/dev/vda / ext4 rw,relatime 0 1" > "$root/etc/fstab"
    cat > "$root/etc/systemd/system/initramfs-bench-done.service" << 'EOF'
[Unit]
Description=initramfs bench: booted, power off
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "INITRAMFS-BENCH multi-user" > /dev/kmsg; busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetId > /dev/null && echo "INITRAMFS-BENCH bus-answered" > /dev/kmsg; systemctl --no-block poweroff'
[Install]
WantedBy=multi-user.target
EOF
    systemctl --root="$root" -q enable initramfs-bench-done.service
    systemctl --root="$root" -q mask getty.target serial-getty@ttyS0.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer 2> /dev/null || true
    systemctl --root="$root" -q set-default multi-user.target
}

# boot NAME ROOT: the root as an ext4 disk, its /boot/initrd.img-<kver>, serial log $work/NAME.serial.
boot_image() {
    local name=$1 root=$2 kver rc
    kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
    mkfs.ext4 -q -F -L root -d "$root" "$work/$name.disk" 2G
    # systemd and journald log to kmsg: every milestone gets the kernel's timestamp.
    local cmdline="root=/dev/vda rw console=ttyS0 rd.shell=0 rd.emergency=poweroff rd.timeout=60 panic=-1 printk.devkmsg=on systemd.log_target=kmsg systemd.journald.forward_to_kmsg=1"
    say "booting $name (tcg)"
    set +e
    timeout "${FERRYBUS_VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -smp 2 -m 1536 \
        -kernel "$root/boot/vmlinuz-$kver" -initrd "$work/$name.img" -append "$cmdline" \
        -drive "file=$work/$name.disk,format=raw,if=virtio,cache=unsafe" \
        -no-reboot -nodefaults -display none -monitor none -serial "file:$work/$name.serial"
    rc=$?
    set -e
    rm -f "$work/$name.disk"
    say "$name: VM exited with status $rc"
    boot_args+=("--boot-log=$name=$work/$name.serial")
}
boot_args=()

# --- baseline and dbus-broker: the base root, then dbus-broker installed into it by apt ----------
root=$work/root
mkdir -p "$root"
tar -C "$root" -xf "$base_tar"
say "unpacked $(basename "$base_tar")"
build baseline "$root" ""
! grep -qE '^(dbus|dbus-broker|dbus-daemon|ferrybus)$' "$work/baseline.modules" ||
    { say "the baseline has a D-Bus module"; exit 1; }

cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot_run "$root" sh -ec 'export DEBIAN_FRONTEND=noninteractive INITRD=No
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends dbus-broker > /dev/null
    dpkg-query -W dbus-broker' > "$work/broker-version" 2> >(grep -v 'debconf\|^$' >&2)
say "installed $(cat "$work/broker-version") in a copy of the root"
build dbus-broker "$root" "dbus dbus-broker"
has_module dbus-broker dbus-broker || { say "dracut did not include dbus-broker"; exit 1; }
if ((boot)); then
    configure_for_boot "$root" 0123456789abcdef0123456789abcdef
    boot_image dbus-broker "$root"
fi
rm -rf "$root"

# --- ferrybus: the base root with ferrybus installed as the VM test installs it -------------------
mkdir -p "$root"
tar -C "$root" -xf "$base_tar"
install -m 0755 "$node_bin" "$root/usr/bin/node"
node scripts/install-files.mjs --destdir "$root" --no-bundle >&2
systemctl --root="$root" -q enable ferrybus.service ferrybus-root.service ferrybus-shutdown.service
build ferrybus "$root" "dbus ferrybus"
has_module ferrybus ferrybus || { say "dracut did not include ferrybus"; exit 1; }
if has_module ferrybus dbus-broker || has_module ferrybus dbus-daemon; then say "the ferrybus image has another bus"; exit 1; fi
if ((boot)); then
    configure_for_boot "$root" fedcba9876543210fedcba9876543210
    boot_image ferrybus "$root"
fi
rm -rf "$root"

# --- report ---------------------------------------------------------------------------------------
node "$work/initramfs-report.mjs" --work="$work" --out="$out" --node="$node_bin" \
    --broker-version="$(cut -f2 "$work/broker-version")" \
    ${serial_log:+"--serial-log=$serial_log"} "${boot_args[@]}"
say "wrote $out"
