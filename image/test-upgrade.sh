#!/usr/bin/env bash
# Installs, upgrades, removes and purges the roomgate packages FOR REAL on this machine, and
# checks that an upgrade keeps the configuration and the data and that purge removes them.
# Meant for a throw-away Debian box or VM (the qemu image test): it creates the users, writes
# /etc/roomgate and /var/lib/roomgate, and purges both packages at the end. Run as root:
#
#   image/test-upgrade.sh OLD_DIR NEW_DIR      # OLD_DIR/NEW_DIR: roomgate-{gateway,hub}_*.deb
#   image/test-upgrade.sh NEW_DIR              # "old" = NEW_DIR's packages, "new" = the same
#                                              # repacked as version <v>+upgradetest
#
# With systemd running (PID 1) the services are started, restarted and stopped by the
# packages themselves and the gateway is reached over HTTPS. Without systemd (a container) the
# maintainer scripts skip starting units, so the script runs the installed gateway itself as
# user roomgate, the way gateway.service does, to write and read the data. The store's schema
# migration from older releases is tested by `cargo test -p gateway --lib store` (a committed
# release-1 store); here the new version must open the old version's store with its data.
set -euo pipefail

fail() { echo "test-upgrade: FAIL: $*" >&2; exit 1; }
ok() { echo "test-upgrade: ok: $*"; }
[ "$(id -u)" = 0 ] || fail "run as root (it installs packages)"
[ $# -ge 1 ] || fail "usage: $0 [OLD_DIR] NEW_DIR"
work=$(mktemp -d)
gateway_pid=
cleanup() {
    [ -z "$gateway_pid" ] || kill "$gateway_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

pick() { ls "$1"/"$2"_*.deb 2>/dev/null | sort -V | tail -1; }
if [ $# -ge 2 ]; then
    old_gateway=$(pick "$1" roomgate-gateway); old_hub=$(pick "$1" roomgate-hub)
    new_gateway=$(pick "$2" roomgate-gateway); new_hub=$(pick "$2" roomgate-hub)
else
    old_gateway=$(pick "$1" roomgate-gateway); old_hub=$(pick "$1" roomgate-hub)
    # The same files with a higher version: dpkg treats it as an upgrade (scripts get
    # "upgrade <old>", conffiles are compared, the unit is restarted).
    repack() {
        local deb=$1 out=$2
        dpkg-deb -R "$deb" "$work/repack"
        sed -i 's/^Version: \(.*\)$/Version: \1+upgradetest/' "$work/repack/DEBIAN/control"
        dpkg-deb -Znone -b "$work/repack" "$out" >/dev/null  # no compression: seconds, not minutes, in an emulated VM
        rm -rf "$work/repack"
    }
    new_gateway="$work/new-gateway.deb"; repack "$old_gateway" "$new_gateway"
    new_hub="$work/new-hub.deb"; repack "$old_hub" "$new_hub"
fi
for f in "$old_gateway" "$old_hub" "$new_gateway" "$new_hub"; do
    [ -f "$f" ] || fail "missing package (looked for roomgate-gateway_*.deb and roomgate-hub_*.deb)"
done
echo "test-upgrade: $(basename "$old_gateway") -> $(dpkg-deb --field "$new_gateway" Version)"

systemd=
[ -d /run/systemd/system ] && systemd=1
[ -n "$systemd" ] && echo "test-upgrade: systemd is running: the packages start the services" ||
    echo "test-upgrade: no systemd: the gateway is run by this script as user roomgate"

# The gateway's console: HTTPS on 8443 trusting only its own certificate, with the token it
# writes for local tools at every start (both in its data dir); releases before the console
# served plain HTTP on 8080.
port=8443
gw_curl() {
    local path=$1; shift
    local data=/var/lib/roomgate
    if [ -f "$data/certs/console.crt" ] && [ -f "$data/cli-token" ]; then
        curl -fsS --cacert "$data/certs/console.crt" \
            -H "Authorization: Bearer $(cat "$data/cli-token")" "https://localhost:$port$path" "$@"
    else
        curl -fsS "http://127.0.0.1:8080$path" "$@"
    fi
}
wait_healthy() {
    for _ in $(seq 1 100); do
        gw_curl /healthz >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    fail "the gateway did not answer /healthz on port $port"
}
# start_gateway / stop_gateway: what gateway.service does, when systemd is not there to do it.
start_gateway() {
    if [ -n "$systemd" ]; then
        systemctl is-active --quiet gateway || fail "gateway.service is not active: $(systemctl status gateway --no-pager 2>&1 | tail -5)"
    else
        install -d -o roomgate -g roomgate -m 0750 /var/lib/roomgate
        runuser -u roomgate -- /usr/lib/roomgate/gateway run --site /etc/roomgate/site.toml \
            --data /var/lib/roomgate --listen "127.0.0.1:$port" >"$work/gateway.log" 2>&1 &
        gateway_pid=$!
    fi
    wait_healthy
}
stop_gateway() {
    if [ -z "$systemd" ] && [ -n "$gateway_pid" ]; then
        kill "$gateway_pid"; wait "$gateway_pid" || true; gateway_pid=
    fi
}

export DEBIAN_FRONTEND=noninteractive
dpkg_install() { dpkg --force-confold -i "$@" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i $*"; }; }

# ---- version N ------------------------------------------------------------------------------
dpkg_install "$old_gateway" "$old_hub"
id roomgate >/dev/null 2>&1 || fail "user roomgate not created"
id -nG roomgate | grep -qw dialout || fail "roomgate is not in dialout"
id roomgate-hub >/dev/null 2>&1 || fail "user roomgate-hub not created"
[ "$(stat -c '%a %U %G' /etc/roomgate)" = "770 root roomgate" ] ||
    fail "/etc/roomgate is $(stat -c '%a %U %G' /etc/roomgate), not 770 root roomgate"
[ "$(stat -c '%a' /etc/roomgate/hub.env)" = 640 ] || fail "hub.env is not 0640"
[ -L /etc/systemd/system/multi-user.target.wants/gateway.service ] || fail "gateway.service not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/hub.service ] || fail "hub.service enabled on install"
[ -z "$systemd" ] || ! systemctl is-active --quiet hub || fail "hub.service started on install"
ok "installed: users, /etc/roomgate 0770 root:roomgate, gateway enabled, hub not enabled"

# The administrator's configuration: a room in the site file, a broker in hub.env.
cat >>/etc/roomgate/site.toml <<'TOML'

[[rooms]]
id = "t1"
name = "Upgrade test room"
capacity = 2
kind = "bookable"
TOML
sed -i 's/^#HUB_BROKER=.*/HUB_BROKER=broker.test:8883/' /etc/roomgate/hub.env
site_sum=$(sha256sum /etc/roomgate/site.toml)
env_sum=$(sha256sum /etc/roomgate/hub.env)
[ -z "$systemd" ] || systemctl restart gateway
start_gateway
booking=$(gw_curl /api/rooms/t1/bookings -X POST -H 'content-type: application/json' \
    -d '{"minutes": 30, "subject": "survives the upgrade", "organizer": "ana@example.com"}') ||
    fail "booking not accepted"
booking_id=$(printf '%s' "$booking" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
stop_gateway
[ -f /var/lib/roomgate/gateway.redb ] || fail "no store in /var/lib/roomgate"
ok "version N runs; site.toml and hub.env edited; booking $booking_id stored"

# ---- version N+1 ----------------------------------------------------------------------------
pid_before=
[ -z "$systemd" ] || pid_before=$(systemctl show -p MainPID --value gateway)
dpkg_install "$new_gateway" "$new_hub"
[ "$(sha256sum /etc/roomgate/site.toml)" = "$site_sum" ] || fail "site.toml changed by the upgrade"
[ "$(sha256sum /etc/roomgate/hub.env)" = "$env_sum" ] || fail "hub.env changed by the upgrade"
[ ! -e /etc/roomgate/site.toml.dpkg-new ] || fail "site.toml.dpkg-new appeared"
if [ -n "$systemd" ]; then
    [ "$(systemctl show -p MainPID --value gateway)" != "$pid_before" ] || fail "gateway.service not restarted"
fi
start_gateway
# Read whole before grep: `grep -q` stops at the first match and, under pipefail, curl's
# failed write then fails the check (seen under real systemd in the image test).
room=$(gw_curl /api/rooms/t1) || fail "room t1 not served after the upgrade"
grep -q "$booking_id" <<<"$room" || fail "booking $booking_id lost in the upgrade"
metrics=$(gw_curl /metrics) || fail "no /metrics after the upgrade"
grep -q '^roomgate_build_info' <<<"$metrics" || fail "no build info after the upgrade"
stop_gateway
ok "upgraded: configuration kept, gateway restarted, booking still there"

# ---- remove, then purge ---------------------------------------------------------------------
dpkg -r roomgate-gateway roomgate-hub >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -r"; }
[ -f /var/lib/roomgate/gateway.redb ] || fail "remove deleted the store"
[ -f /etc/roomgate/site.toml ] || fail "remove deleted the site file"
[ ! -e /usr/lib/roomgate/gateway ] || fail "remove left the binary"
ok "removed: binaries gone, configuration and store kept"
dpkg -P roomgate-gateway roomgate-hub >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -P"; }
[ ! -e /var/lib/roomgate ] || fail "purge left /var/lib/roomgate"
[ ! -e /etc/roomgate ] || fail "purge left /etc/roomgate: $(ls -A /etc/roomgate)"
[ ! -e /etc/systemd/system/multi-user.target.wants/gateway.service ] || fail "purge left the unit enabled"
ok "purged: configuration, store and unit state gone (users kept, as Debian does)"
echo "test-upgrade: all checks passed"
