#!/usr/bin/env bash
# Builds a bootable disk image of a roomgate gateway box from Debian's packages: Debian 12
# (minbase), its kernel, systemd (networkd with DHCP, resolved, timesyncd), systemd-boot (UEFI),
# a serial console, and the roomgate-gateway package preinstalled and enabled. See
# image/README.md ("The disk image").
#
#   sudo image/build-image.sh                       # release packages, target/image/*.img
#   sudo image/build-image.sh --debs target/debian  # packages already built there
#   sudo image/build-image.sh --arch arm64          # arm64 boxes (see image/README.md)
#
# Options:
#   --debs DIR          take roomgate-gateway_*_<arch>.deb from DIR (default: run build-deb.sh)
#   --out FILE          the raw image (default target/image/roomgate-<version>-<arch>.img)
#   --qcow2             also write FILE.qcow2 (compressed; for qemu and most hypervisors)
#   --suite NAME        Debian suite (default bookworm, the release the packages are built on)
#   --mirror URL        Debian mirror (default http://deb.debian.org/debian)
#   --ssh-key FILE      install openssh-server and FILE as root's authorized key (keys only)
#   --serial-autologin  TESTS ONLY: a root shell on the serial console without a password
#
# The image has no password anywhere: root is locked, the web console's first account is made
# with the setup code the gateway generates on its first boot (shown above the login prompt
# and in `journalctl -u gateway`). Needs root (chroot, mounts), mmdebstrap, mtools, dosfstools,
# fdisk, e2fsprogs; tests/run installs them through image/test-image.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-image: $*" >&2; exit 1; }

arch=$(dpkg --print-architecture)
debs=
out=
qcow2=
suite=bookworm
mirror=http://deb.debian.org/debian
ssh_key=
autologin=
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --debs) debs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --qcow2) qcow2=1; shift ;;
    --suite) suite="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --ssh-key) ssh_key="$2"; shift 2 ;;
    --serial-autologin) autologin=1; shift ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (it chroots into the image and bind-mounts /proc, /sys, /dev)"
for tool in mmdebstrap mkfs.vfat mcopy sfdisk mkfs.ext4; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install mmdebstrap dosfstools mtools fdisk e2fsprogs)"
done
[ -z "$ssh_key" ] || [ -s "$ssh_key" ] || die "--ssh-key $ssh_key: no such file"

# Per architecture: the kernel package, the UEFI boot loader's name, the discoverable
# partition type of the root (so systemd-repart and the boot loader recognize it) and the
# serial console the kernel talks to.
case "$arch" in
amd64)
    kernel=linux-image-amd64 efi_name=BOOTX64.EFI console=ttyS0
    root_type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 rust_target=
    ;;
arm64)
    kernel=linux-image-arm64 efi_name=BOOTAA64.EFI console=ttyAMA0
    root_type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE rust_target=aarch64-unknown-linux-gnu
    ;;
*) die "--arch $arch: amd64 or arm64" ;;
esac
esp_type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="gateway"))')
if [ -z "$debs" ]; then
    image/build-deb.sh ${rust_target:+--target "$rust_target"}
    debs=target/debian
fi
deb=$(ls "$debs"/roomgate-gateway_*_"$arch".deb 2>/dev/null | sort -V | tail -n1)
[ -n "$deb" ] || die "no roomgate-gateway_*_$arch.deb in $debs"
out=${out:-target/image/roomgate-$version-$arch.img}
mkdir -p "$(dirname "$out")"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/roomgate-image.XXXXXX")
root="$work/root"
mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mounted+=("$2"); }
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
step() { echo "== $*"; }

# --- The root file system ----------------------------------------------------------------
packages=(
    systemd systemd-sysv udev dbus systemd-resolved systemd-timesyncd "$kernel" initramfs-tools
    systemd-boot ca-certificates iproute2 procps less curl unattended-upgrades
)
[ -z "$ssh_key" ] || packages+=(openssh-server)
step "mmdebstrap $suite ($arch): ${packages[*]}"
mmdebstrap --quiet --mode=root --variant=minbase --arch="$arch" --format=directory \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$root" "$mirror" "deb $mirror-security $suite-security main" \
    "deb $mirror $suite-updates main"

bind /proc "$root/proc"
bind /sys "$root/sys"
bind /dev "$root/dev"

step "roomgate-gateway: $(basename "$deb")"
mkdir -p "$root/tmp/debs"
cp "$deb" "$root/tmp/debs/"
# apt resolves the package's Depends from the mirror; the postinst creates the user and
# /etc/roomgate and enables gateway.service (nothing starts: systemd is not running here).
in_root apt-get install -y -qq --no-install-recommends "/tmp/debs/$(basename "$deb")" >/dev/null
rm -rf "$root/tmp/debs"
in_root systemctl is-enabled gateway.service >/dev/null || die "gateway.service is not enabled"

step "system configuration"
cp -a image/rootfs/. "$root/"
echo roomgate >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\troomgate\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
in_root systemctl enable --quiet systemd-networkd systemd-resolved systemd-timesyncd \
    roomgate-console-issue.service roomgate-console-issue.path
# network-online.target (which the gateway waits for) is reached when any link is up, not
# all: a box often has an unplugged second port. A minute at most, then it starts anyway.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60\n' \
    >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
# The journal is kept on disk across reboots, bounded.
mkdir -p "$root/var/log/journal" "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=persistent\nSystemMaxUse=256M\n' \
    >"$root/etc/systemd/journald.conf.d/roomgate.conf"
# No password anywhere: root is locked; logins only by the optional SSH key.
in_root passwd --lock root >/dev/null
if [ -n "$ssh_key" ]; then
    install -d -m 0700 "$root/root/.ssh"
    install -m 0600 "$ssh_key" "$root/root/.ssh/authorized_keys"
    printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n' \
        >"$root/etc/ssh/sshd_config.d/roomgate.conf"
    # Host keys are made on the first boot, so two boxes from one image never share them.
    rm -f "$root"/etc/ssh/ssh_host_*
    mkdir -p "$root/etc/systemd/system/ssh.service.d"
    printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' \
        >"$root/etc/systemd/system/ssh.service.d/host-keys.conf"
fi
if [ -n "$autologin" ]; then
    echo "== WARNING: --serial-autologin: root shell on $console without a password (tests only)"
    mkdir -p "$root/etc/systemd/system/serial-getty@$console.service.d"
    printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty -o "-p -f -- \\\\u" --autologin root --keep-baud 115200,57600,38400,9600 - $TERM\n' \
        >"$root/etc/systemd/system/serial-getty@$console.service.d/autologin.conf"
fi

# --- Partitions and boot loader ----------------------------------------------------------
esp_uuid=$(cat /proc/sys/kernel/random/uuid)
root_uuid=$(cat /proc/sys/kernel/random/uuid)
cat >"$root/etc/fstab" <<EOF
# roomgate image. The root grows to fill the disk on the first boot (/etc/repart.d).
PARTUUID=$root_uuid / ext4 rw,errors=remount-ro,x-systemd.growfs 0 1
PARTUUID=$esp_uuid /boot/efi vfat umask=0077,noauto,x-systemd.automount 0 2
EOF
echo "root=PARTUUID=$root_uuid rw console=tty0 console=$console,115200" >"$root/etc/kernel/cmdline"

step "systemd-boot and the kernel on the EFI system partition"
# bootctl and kernel-install want the ESP to be a mount point: bind the directory onto itself
# (its content becomes the FAT partition below). The entry token is the OS id, not the
# machine id, which each box makes on its first boot; kernel upgrades later go through the
# same kernel-install hooks on the real ESP.
bind "$root/boot/efi" "$root/boot/efi"
in_root env SYSTEMD_RELAX_ESP_CHECKS=1 bootctl install --esp-path=/boot/efi --no-variables \
    --entry-token=os-id --make-entry-directory=yes >/dev/null
kver=$(ls "$root/lib/modules" | sort -V | tail -n1)
in_root env SYSTEMD_RELAX_ESP_CHECKS=1 kernel-install add "$kver" "/boot/vmlinuz-$kver" \
    "/boot/initrd.img-$kver"
umount "$root/boot/efi"
unset 'mounted[${#mounted[@]}-1]'
esp="$root/boot/efi"
# Inside the chroot the bind mount is not seen as one, so the entry names the files by their
# path from /, not from the ESP's root.
sed -i 's#^\(linux\|initrd\)\( *\)/boot/efi/#\1\2/#' "$esp"/loader/entries/*.conf
grep -q "^linux *//\?debian/$kver/linux" "$esp"/loader/entries/*.conf ||
    die "boot entry does not name the kernel on the ESP: $(cat "$esp"/loader/entries/*.conf)"
[ -f "$esp/EFI/BOOT/$efi_name" ] || die "no $efi_name on the ESP"
# A random seed shared by every box made from this image is no seed: each box writes its own.
rm -f "$esp/loader/random-seed"
printf 'timeout 3\nconsole-mode keep\ndefault debian-*\n' >"$esp/loader/loader.conf"

# The machine id is made on the first boot (ConditionFirstBoot units run then).
echo uninitialized >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/* "$root"/var/tmp/*

for m in dev sys proc; do umount -l "$root/$m"; done
mounted=()

step "file systems"
esp_mib=256
esp_img="$work/esp.img"
mkfs.vfat -C -F 32 -n ESP "$esp_img" $((esp_mib * 1024)) >/dev/null
mcopy -s -i "$esp_img" "$esp"/* ::
rm -rf "${esp:?}"/*
used_mib=$(du -sm "$root" | cut -f1)
# Room for the first days (logs, the store); the partition grows on the first boot anyway.
root_mib=$((used_mib * 13 / 10 + 512))
root_img="$work/root.img"
mkfs.ext4 -q -L roomgate-root -d "$root" "$root_img" "${root_mib}M"
rm -rf "$root"

step "disk image $out"
rm -f "$out"
total_mib=$((1 + esp_mib + root_mib + 1))
truncate -s "${total_mib}M" "$out"
sfdisk --quiet "$out" <<EOF
label: gpt
unit: sectors
first-lba: 2048
start=2048, size=$((esp_mib * 2048)), type=$esp_type, uuid=$esp_uuid, name="esp"
start=$(((1 + esp_mib) * 2048)), size=$((root_mib * 2048)), type=$root_type, uuid=$root_uuid, name="root"
EOF
dd if="$esp_img" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$root_img" of="$out" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
if [ -n "$qcow2" ]; then
    qemu-img convert -c -O qcow2 "$out" "$out.qcow2"
fi
echo "build-image: $out ($total_mib MiB; $arch, Debian $suite, kernel $kver, $(basename "$deb"))"
