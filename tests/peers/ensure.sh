#!/usr/bin/env bash
# Installs the independent protocol peers the interop tests talk to, when missing, and prints
# the Python interpreter to run them with. Idempotent and safe to call from parallel tests
# (flock). Used by tests/run up front and by test binaries that need a peer.
#
#   socat                         - serial pty pairs for Modbus RTU and serial line devices
#   mosquitto                     - the MQTT broker the sync tests start on their own ports
#   chromium                      - the real browser of the page tests
#   fonts-wqy-microhei            - a CJK font for the zh-CN page screenshots
#   postgresql                    - the hub's database server; tests run their own cluster
#   systemd                       - systemd-analyze verify/security for the service units
#   pymodbus, pyserial (venv)     - an independent Modbus TCP/RTU server
#   bacpypes3 (venv)              - an independent BACnet/IP device
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${ROOMGATE_PEERS_VENV:-$root/target/peers-venv}"
mkdir -p "$(dirname "$venv")"
exec 9>"$(dirname "$venv")/.peers.lock"
flock 9

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        $sudo apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
    }
}

have socat || apt_install socat >&2
have mosquitto || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto >&2
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql >&2
# Debian's Chromium for the page tests (tests/src/browser.rs drives it over DevTools).
[ -x /usr/bin/chromium ] || apt_install chromium >&2
# A CJK font, so the zh-CN pages render in screenshots (tests/tests/panel.rs).
fc-list :lang=zh 2>/dev/null | grep -q . || apt_install fonts-wqy-microhei >&2
# systemd-analyze checks the service units (gateway/tests/service.rs, cloud-sync/tests/hub_service.rs).
have systemd-analyze || apt_install systemd >&2
python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv >&2

# Pinned so a run today and a run next year test against the same peers.
want="pymodbus==3.16.1 pyserial==3.5 bacpypes3==0.0.110"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
    echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
