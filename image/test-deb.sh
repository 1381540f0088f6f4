#!/usr/bin/env bash
# Checks the Debian packages without installing them: builds them from the dev binaries
# (image/build-deb.sh --dev: seconds, where a release build takes minutes), then checks their
# control data, file lists, conffiles and maintainer scripts, runs lintian when it is there,
# and runs the packaged gateway on the packaged starter site. Called by tests/run.
# The real install, upgrade and purge (which need root and systemd) are image/test-upgrade.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb: ok: $*"; }

image/build-deb.sh --dev >/dev/null
version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="gateway"))')
arch=$(dpkg --print-architecture)
gateway_deb="target/debian/roomgate-gateway_${version}-1_${arch}.deb"
hub_deb="target/debian/roomgate-hub_${version}-1_${arch}.deb"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# field PACKAGE.deb NAME: one control field.
field() { dpkg-deb --field "$1" "$2"; }
# files PACKAGE.deb: every path in the package (directories excluded), sorted.
files() { dpkg-deb --contents "$1" | awk '$1 !~ /^d/ { print $6 }' | sed 's#^\./#/#' | sort; }

check_package() {
    local deb=$1 name=$2 conffiles=$3 expected_files=$4
    [ -f "$deb" ] || fail "$deb was not built"
    [ "$(field "$deb" Package)" = "$name" ] || fail "$deb: Package is not $name"
    [ "$(field "$deb" Version)" = "${version}-1" ] || fail "$deb: Version is not ${version}-1"
    local depends
    depends=$(field "$deb" Depends)
    [[ "$depends" == *libc6* && "$depends" == *systemd* ]] ||
        fail "$deb: Depends '$depends' lacks libc6 (shlibs) or systemd"
    dpkg-deb -e "$deb" "$work/$name.control"
    diff <(printf '%s\n' $conffiles) "$work/$name.control/conffiles" ||
        fail "$deb: conffiles differ (above)"
    diff <(printf '%s\n' $expected_files | sort) <(files "$deb") ||
        fail "$deb: file list differs (above: < expected, > packaged)"
    for script in postinst prerm postrm; do
        [ -x "$work/$name.control/$script" ] || fail "$deb: no executable $script"
        sh -n "$work/$name.control/$script" || fail "$deb: $script: syntax error"
        ! grep -q '#DEBHELPER#' "$work/$name.control/$script" ||
            fail "$deb: $script still has the #DEBHELPER# token"
    done
    grep -q "systemd-sysusers .*${name}.conf" "$work/$name.control/postinst" ||
        fail "$deb: postinst does not create the user"
    # Data goes only on purge: every rm of /var/lib sits in the purge branch of postrm.
    awk '/"\$1" = "purge"/ { p = 1 } /^fi/ { p = 0 } /rm -rf \/var\/lib/ && !p { exit 1 }' \
        "$work/$name.control/postrm" || fail "$deb: postrm removes data outside purge"
    dpkg-deb -x "$deb" "$work/root"
    ok "$name: $(du -k "$deb" | cut -f1) KiB, Depends: $depends"
}

check_package "$gateway_deb" roomgate-gateway "/etc/roomgate/site.toml" "
    /etc/roomgate/site.toml
    /usr/bin/roomgate-gateway
    /usr/lib/roomgate/gateway
    /usr/lib/systemd/system/gateway.service
    /usr/lib/sysusers.d/roomgate-gateway.conf
    /usr/lib/tmpfiles.d/roomgate-gateway.conf
    /usr/share/doc/roomgate-gateway/README.md
    /usr/share/doc/roomgate-gateway/changelog.Debian.gz
    /usr/share/doc/roomgate-gateway/copyright"
check_package "$hub_deb" roomgate-hub "/etc/roomgate/hub.env" "
    /etc/roomgate/hub.env
    /usr/bin/roomgate-hub
    /usr/lib/roomgate/hub
    /usr/lib/systemd/system/hub.service
    /usr/lib/sysusers.d/roomgate-hub.conf
    /usr/share/doc/roomgate-hub/README.md
    /usr/share/doc/roomgate-hub/changelog.Debian.gz
    /usr/share/doc/roomgate-hub/copyright
    /usr/share/lintian/overrides/roomgate-hub"

# The gateway is enabled and started on install and restarted after an upgrade; the hub
# (which needs hub.env and certificates first) is neither enabled nor started on install.
grep -q 'deb-systemd-helper enable gateway.service' "$work/roomgate-gateway.control/postinst" ||
    fail "gateway postinst does not enable gateway.service"
grep -q '_dh_action=restart' "$work/roomgate-gateway.control/postinst" ||
    fail "gateway postinst does not restart gateway.service after an upgrade"
grep -q 'systemd-tmpfiles .*--create roomgate-gateway.conf' "$work/roomgate-gateway.control/postinst" ||
    fail "gateway postinst does not create /etc/roomgate"
grep -q 'deb-systemd-helper debian-installed hub.service' "$work/roomgate-hub.control/postinst" ||
    fail "hub postinst enables hub.service on a first install"
! grep -q 'deb-systemd-invoke $_dh_action\|deb-systemd-invoke start' "$work/roomgate-hub.control/postinst" ||
    fail "hub postinst starts hub.service on a first install"
ok "maintainer scripts: gateway enabled+started, hub left for the admin, data removed only on purge"

# The packaged units are the ones in systemd/, and the packages' users and tmpfiles lines
# together are systemd/'s (so a box installed from the .deb equals one set up by hand).
cmp systemd/gateway.service "$work/root/usr/lib/systemd/system/gateway.service"
cmp systemd/hub.service "$work/root/usr/lib/systemd/system/hub.service"
rules() { grep -hv -e '^#' -e '^$' "$@" | sort; }
diff <(rules systemd/sysusers.d/roomgate.conf) \
    <(rules "$work"/root/usr/lib/sysusers.d/roomgate-*.conf) ||
    fail "package sysusers.d lines differ from systemd/sysusers.d/roomgate.conf"
diff <(rules systemd/tmpfiles.d/roomgate.conf) \
    <(rules "$work"/root/usr/lib/tmpfiles.d/roomgate-*.conf) ||
    fail "package tmpfiles.d lines differ from systemd/tmpfiles.d/roomgate.conf"
ok "units, users and tmpfiles match systemd/"

# The packaged gateway accepts the packaged starter site, and the examples commented out in it
# are valid once uncommented.
"$work/root/usr/bin/roomgate-gateway" check "$work/root/etc/roomgate/site.toml" ||
    fail "the packaged gateway refuses the packaged site.toml"
sed -E 's/^# ?(\[|id |name |protocol |host |port |poll |points |  \{|\]|capacity |kind |bindings |no_show_after |vacancy_release )/\1/' \
    "$work/root/etc/roomgate/site.toml" >"$work/uncommented.toml"
out=$("$work/root/usr/bin/roomgate-gateway" check "$work/uncommented.toml") ||
    fail "the starter site's commented examples do not pass check"
[[ "$out" == *"1 rooms, 1 devices, 3 points"* ]] || fail "uncommented starter site: $out"
"$work/root/usr/bin/roomgate-hub" --help >/dev/null || fail "the packaged hub does not run"
ok "packaged gateway checks the starter site (and its examples); packaged hub runs"

if command -v lintian >/dev/null 2>&1; then
    # Errors fail the test; warnings and notes are printed (see image/README.md for the known ones).
    lintian --tag-display-limit 0 "$gateway_deb" "$hub_deb" 2>&1 | grep -v 'root privileges' || true
    if lintian --fail-on error "$gateway_deb" "$hub_deb" >/dev/null 2>&1; then
        ok "lintian: no errors"
    else
        fail "lintian reports errors (above)"
    fi
else
    echo "test-deb: lintian not installed (apt-get install lintian): skipped"
fi
echo "test-deb: all checks passed"
