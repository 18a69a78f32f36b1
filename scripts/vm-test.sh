#!/usr/bin/env bash
# The VM boot test: proves DESIGN.md §2 in a real boot (Debian 12 kernel, dracut initramfs,
# systemd 252). Unattended; needs root.
#
#   scripts/vm-test.sh [--log FILE] [--keep]
#
#  1. bundles ferrybus (scripts/bundle.mjs) and the test client (test/vm/vm-client.ts + dbus-next);
#  2. builds a small Debian root with mmdebstrap, cached by a hash of its inputs under
#     $FERRYBUS_VM_CACHE (default /var/cache/ferrybus-vm);
#  3. installs ferrybus (scripts/install-files.mjs), this machine's node binary, the test client,
#     units and dracut module into it, builds the initramfs with dracut inside the root, and makes
#     an ext4 disk image (cached too, by a hash of everything that went in);
#  4. boots it with QEMU (TCG unless KVM answers a short probe), serial console to the log file;
#     the guest runs the probes and powers itself off;
#  5. checks the markers the probes printed ("FERRYBUS-VM PASS|FAIL ...", "DONE <phase> failures=0").
#
# The guest has no dbus-daemon and no dbus-broker: ferrybus is its system bus (dbus.service and
# dbus.socket) from the initrd to poweroff, PID 1 and systemd-logind use it. Debian's
# dbus-system-bus-common brings system.conf, dbus.socket (shadowed) and the messagebus user;
# libpam-systemd, which would pull in a bus daemon, is not installed.
#
# Environment: FERRYBUS_VM_CACHE, FERRYBUS_VM_ACCEL (auto|tcg|kvm), FERRYBUS_VM_TIMEOUT (seconds,
# default 900), FERRYBUS_NODE (the node binary for the guest, default: the one running here),
# FERRYBUS_VM_NO_APT=1 (do not install missing host packages).
# Host packages: qemu-system-x86 mmdebstrap e2fsprogs (installed when missing, as root).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${FERRYBUS_VM_CACHE:-/var/cache/ferrybus-vm}
log=""
keep=0
while (($#)); do
    case $1 in
    --log) log=$2; shift 2 ;;
    --log=*) log=${1#--log=}; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "vm-test: unknown option $1" >&2; exit 64 ;;
    esac
done
log=${log:-$cache/serial.log}

t0=$(date +%s)
step_start=$t0
say() { echo "vm-test: $*" >&2; }
step() {
    local now
    now=$(date +%s)
    say "$* (+$((now - step_start)) s, total $((now - t0)) s)"
    step_start=$now
}

[ "$(id -u)" = 0 ] || { say "must run as root (mmdebstrap, chroot, dracut)"; exit 1; }

# --- host packages ------------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 > /dev/null || need+=(qemu-system-x86)
command -v mmdebstrap > /dev/null || need+=(mmdebstrap)
command -v mkfs.ext4 > /dev/null || need+=(e2fsprogs)
if ((${#need[@]})); then
    if [ "${FERRYBUS_VM_NO_APT:-0}" = 1 ] || ! command -v apt-get > /dev/null; then
        say "missing host packages: ${need[*]}"
        exit 1
    fi
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi

mkdir -p "$cache"
# One VM build at a time per cache (CI and a developer may share the machine).
exec 9> "$cache/lock"
flock 9

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ferrybus-vm.XXXXXX")
cleanup() {
    # The chroot mounts live in a private mount namespace (unshare -m): nothing to unmount here.
    if [ "$keep" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- 1. bundles -------------------------------------------------------------------------------------
cd "$repo"
node scripts/bundle.mjs >&2
node_modules/.bin/esbuild test/vm/vm-client.ts --bundle --platform=node --format=esm --target=node20 \
    --external:x11 --external:usocket --log-level=warning --outfile="$work/vm-client.mjs" \
    --banner:js="import { createRequire as __vmCreateRequire } from 'node:module'; const require = __vmCreateRequire(import.meta.url);"
node_bin=$(readlink -f "${FERRYBUS_NODE:-$(command -v node)}")
step "bundled ferrybus and the test client"

# --- 2. base root file system (cached) --------------------------------------------------------
suite=bookworm
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
base_packages=systemd-sysv,udev,dracut,linux-image-amd64,kmod,procps,zstd,e2fsprogs,libstdc++6,dbus-system-bus-common
base_opts=(--variant=minbase "--include=$base_packages"
    "--aptopt=Acquire::Check-Valid-Until \"false\""
    "--dpkgopt=path-exclude=/usr/share/doc/*" "--dpkgopt=path-exclude=/usr/share/man/*"
    "--dpkgopt=path-exclude=/usr/share/locale/*")
base_key=$( { echo "base v1 $suite"; printf '%s\n' "${base_opts[@]}"; cat "$sources"; } | sha256sum | cut -c1-16)
base_tar=$cache/base-$base_key.tar
if [ ! -f "$base_tar" ]; then
    say "building the base root file system (mmdebstrap, a few minutes)"
    # INITRD=No: the kernel's postinst must not build an initramfs now (pitfall 2).
    INITRD=No mmdebstrap --quiet --format=tar "${base_opts[@]}" "$suite" "$base_tar.part" "$sources" >&2
    mv "$base_tar.part" "$base_tar"
    find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "base-$base_key.tar" -delete
    step "built base root $base_tar"
else
    step "base root cached: $base_tar"
fi

# --- 3. the guest image (cached by its inputs) ------------------------------------------------
image_key=$( {
    echo "image v1 $base_key"
    sha256sum "$0" "$node_bin" "$work/vm-client.mjs"
    find dist/bundle systemd dbus dracut-module test/vm/units test/vm/dbus test/vm/dracut scripts/install-files.mjs -type f -print0 |
        sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
image=$cache/image-$image_key
if [ ! -f "$image/disk.img" ]; then
    say "building the guest image $image_key"
    root=$work/root
    mkdir -p "$root"
    tar -C "$root" -xf "$base_tar"
    kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)

    # Node: the same binary, at /usr/bin/node, in the real root and (via dracut) the initrd.
    install -m 0755 "$node_bin" "$root/usr/bin/node"
    node scripts/install-files.mjs --destdir "$root" --no-bundle >&2
    # The test client, its units and its dracut module.
    install -D -m 0644 "$work/vm-client.mjs" "$root/usr/lib/ferrybus-vmtest/vm-client.mjs"
    install -m 0644 test/vm/units/*.service "$root/usr/lib/systemd/system/"
    install -D -m 0644 test/vm/units/ferrybus-vmtest-console.conf "$root/etc/systemd/system/ferrybus.service.d/vmtest.conf"
    install -D -m 0644 test/vm/dbus/org.ferrybus.VmTest.conf "$root/usr/share/dbus-1/system.d/org.ferrybus.VmTest.conf"
    # For the activation checks (vm-activation.ts): an Exec= service file on the real root.
    install -D -m 0644 test/vm/dbus/org.ferrybus.VmTestActivated.service "$root/usr/share/dbus-1/system-services/org.ferrybus.VmTestActivated.service"
    mkdir -p "$root/usr/lib/dracut/modules.d/91ferrybus-vmtest"
    install -m 0755 test/vm/dracut/91ferrybus-vmtest/* "$root/usr/lib/dracut/modules.d/91ferrybus-vmtest/"

    # A configured machine: no first-boot questions, no getty on the serial console.
    echo ferrybus-vm > "$root/etc/hostname"
    echo "$image_key$image_key" | cut -c1-32 > "$root/etc/machine-id"
    echo "/dev/vda / ext4 rw,relatime 0 1" > "$root/etc/fstab"
    # ferrybus becomes the system bus as README's "Install as the system bus" says: enabling
    # ferrybus.service makes it dbus.service and ferrybus.socket dbus.socket.
    systemctl --root="$root" -q enable ferrybus.service ferrybus-root.service ferrybus-shutdown.service \
        vmtest-realroot-probe.service vmtest-shutdown-check.service
    [ "$(basename "$(readlink "$root/etc/systemd/system/dbus.service")")" = ferrybus.service ] ||
        { say "enabling ferrybus.service did not make it dbus.service"; exit 1; }
    systemctl --root="$root" -q mask getty.target serial-getty@ttyS0.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer 2> /dev/null || true
    systemctl --root="$root" -q set-default multi-user.target
    step "installed ferrybus, node $("$node_bin" --version) and the test client"

    # dracut inside the root (pitfalls 3-7): /proc mounted there, generic (no host-only) initrd,
    # compressed (an uncompressed one breaks the shutdown root), at the path dracut-shutdown
    # restores from (/boot/initrd.img-<kver>), the same file QEMU boots. systemd-hostnamed
    # depends on dracut's module "dbus": ferrybus's 08dbus must resolve it to ferrybus.
    unshare -m -- sh -ec '
        root=$1 kver=$2
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        chroot "$root" dracut --quiet --force --no-hostonly --no-early-microcode --zstd \
            -m "systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules kernel-modules shutdown systemd-hostnamed ferrybus ferrybus-vmtest" \
            --drivers "virtio_pci virtio_blk ext4" \
            "/boot/initrd.img-$kver" "$kver"
        chroot "$root" lsinitrd "/boot/initrd.img-$kver" > "$root/../initramfs.list"
    ' sh "$root" "$kver" >&2
    step "built the initramfs ($(du -h "$root/boot/initrd.img-$kver" | cut -f1))"
    # The initramfs's system bus, as lsinitrd lists it: ferrybus as dbus.service and dbus.socket,
    # the bus configuration, hostnamed (through "dbus"), and neither dbus-daemon nor dbus-broker.
    list=$work/initramfs.list
    modules=$(awk '/^dracut modules:/ { f = 1; next } /^=+$/ { if (f) exit } f' "$list" | tr '\n' ' ')
    say "initramfs modules: $modules"
    for m in dbus ferrybus systemd-hostnamed; do
        case " $modules " in *" $m "*) ;; *) say "dracut did not include module $m"; exit 1 ;; esac
    done
    for want in ' etc/systemd/system/dbus\.service -> \S*/ferrybus\.service$' \
        ' etc/systemd/system/dbus\.socket -> \S*/ferrybus\.socket$' \
        ' usr/lib/systemd/system/ferrybus\.socket$' ' usr/share/dbus-1/system\.conf$' \
        ' usr/share/dbus-1/system\.d/org\.freedesktop\.systemd1\.conf$' ' usr/share/dbus-1/system\.d/org\.ferrybus\.Supervisor1\.conf$' \
        ' usr/share/dbus-1/system\.d/org\.freedesktop\.hostname1\.conf$' '/systemd-hostnamed$'; do
        line=$(grep -E -m1 -- "$want" "$list") || { say "initramfs lacks: $want"; exit 1; }
        say "initramfs has: $(awk '{ for (i = 9; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "\n") }' <<< "$line")"
    done
    if grep -E '/(dbus-daemon|dbus-broker|dbus-broker-launch)$' "$list" >&2; then say "initramfs has a reference bus"; exit 1; fi
    grep -E '^messagebus:' "$root/etc/passwd" > /dev/null || { say "no messagebus user in the root"; exit 1; }

    mkdir -p "$image.tmp"
    cp "$root/boot/vmlinuz-$kver" "$image.tmp/vmlinuz"
    cp "$root/boot/initrd.img-$kver" "$image.tmp/initrd.img"
    mkfs.ext4 -q -F -L root -d "$root" "$image.tmp/disk.img" 2G
    rm -rf "$root" "$image"
    mv "$image.tmp" "$image"
    find "$cache" -maxdepth 1 -name 'image-*' ! -name "image-$image_key" -exec rm -rf {} +
    step "made the disk image"
else
    step "guest image cached: $image"
fi

# --- 4. boot ----------------------------------------------------------------------------------
# KVM here is often a nested device under which the Debian kernel never finishes decompressing:
# probe it once per host boot, briefly, and fall back to TCG.
accel=${FERRYBUS_VM_ACCEL:-auto}
if [ "$accel" = auto ]; then
    accel=tcg
    if [ -w /dev/kvm ]; then
        probe_file=$cache/kvm-probe-$(cat /proc/sys/kernel/random/boot_id 2> /dev/null || echo unknown)
        if [ ! -f "$probe_file" ]; then
            rm -f "$cache"/kvm-probe-*
            timeout 15 qemu-system-x86_64 -accel kvm -m 256 -kernel "$image/vmlinuz" \
                -append "console=ttyS0 panic=-1" -no-reboot -nodefaults -display none \
                -serial "file:$work/kvm-probe.log" > /dev/null 2>&1 || true
            if grep -q "Kernel panic\|VFS: Unable to mount root" "$work/kvm-probe.log" 2> /dev/null; then
                echo kvm > "$probe_file"
            else
                echo tcg > "$probe_file"
            fi
        fi
        accel=$(cat "$probe_file")
    fi
    step "accelerator: $accel"
fi

cp --sparse=always "$image/disk.img" "$work/disk.img"
mkdir -p "$(dirname "$log")"
: > "$log"
cmdline="root=/dev/vda rw console=ttyS0 rd.shell=0 rd.emergency=poweroff rd.timeout=60 panic=-1 printk.devkmsg=on"
say "booting ($accel, log $log)"
set +e
timeout "${FERRYBUS_VM_TIMEOUT:-900}" qemu-system-x86_64 -accel "$accel" -smp 2 -m 1536 \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$cmdline" \
    -drive "file=$work/disk.img,format=raw,if=virtio,cache=unsafe" \
    -no-reboot -nodefaults -display none -monitor none -serial "file:$log"
qemu_status=$?
set -e
step "VM exited with status $qemu_status"

# --- 5. markers -------------------------------------------------------------------------------
tr -d '\r' < "$log" | grep -a 'FERRYBUS-VM' | sed 's/^.*FERRYBUS-VM/FERRYBUS-VM/' >&2 || true
ok=1
[ "$qemu_status" = 0 ] || { say "QEMU did not exit cleanly ($qemu_status; 124 = timeout)"; ok=0; }
for phase in initrd realroot shutdown exitrd; do
    grep -aq "FERRYBUS-VM DONE $phase failures=0" "$log" || { say "phase $phase: no clean DONE marker"; ok=0; }
done
if grep -aq 'FERRYBUS-VM FAIL' "$log"; then say "some checks FAILED"; ok=0; fi
if grep -aq 'Cannot umount /oldroot\|Blocking umount of /oldroot' "$log"; then say "the real root did not unmount cleanly"; ok=0; fi
grep -aq 'reboot: Power down' "$log" || { say "the VM did not power down"; ok=0; }
if [ "$ok" = 1 ]; then
    step "PASS: every phase of the boot timeline proven"
    exit 0
fi
step "FAIL (serial log: $log)"
exit 1
