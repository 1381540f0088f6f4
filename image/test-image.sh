#!/usr/bin/env bash
# The bootable image, tested for real (tests/run calls it after test-deb.sh): builds a disk
# image with the dev packages (image/build-image.sh --debs target/debian --serial-autologin),
# boots it under qemu and checks it from outside and on its serial console
# (image/boot-test.py: HTTPS /healthz, the first boot's certificate and setup code, the root
# grown to the disk, then SIGSTOP -> the watchdog restarts the gateway, then poweroff).
# Installs what it needs with apt when missing. Needs root (build-image.sh chroots).
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
missing=()
have mmdebstrap || missing+=(mmdebstrap)
have mkfs.vfat || missing+=(dosfstools)
have mcopy || missing+=(mtools)
have sfdisk || missing+=(fdisk)
have mkfs.ext4 || missing+=(e2fsprogs)
have qemu-system-x86_64 || missing+=(qemu-system-x86)
have qemu-img || missing+=(qemu-utils)
[ -f /usr/share/ovmf/OVMF.fd ] || missing+=(ovmf)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    }
fi

start=$(date +%s)
image/build-deb.sh --dev >/dev/null
root=
[ "$(id -u)" = 0 ] || root=sudo
$root image/build-image.sh --debs target/debian --serial-autologin --out target/image/test.img
built=$(date +%s)
echo "test-image: image built in $((built - start)) s"
python3 image/boot-test.py target/image/test.img --log target/image/test.serial.log \
    --upgrade target/debian
echo "test-image: boot test passed in $(($(date +%s) - built)) s"
