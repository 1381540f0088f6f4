#!/usr/bin/env bash
# Builds the Debian packages roomgate-gateway and roomgate-hub into target/debian/ (cargo-deb;
# the packaging is `[package.metadata.deb]` in gateway/Cargo.toml and cloud-sync/Cargo.toml,
# the maintainer scripts and starter files image/debian/). See image/README.md.
#
#   image/build-deb.sh                                        # release build, this machine's arch
#   image/build-deb.sh --target aarch64-unknown-linux-gnu     # arm64 boxes (cross-compiled)
#   image/build-deb.sh --dev                                  # from the dev binaries (tests)
#
# --dev packages target/debug/{gateway,hub} as they are (cargo build, no release build): the
# same files, scripts and units as a release package, built in seconds, for image/test-deb.sh.
# Never ship those: they are unoptimized.
#
# arm64: needs the Rust target and Debian's cross linker and libc (on a Debian/Ubuntu host):
#   rustup target add aarch64-unknown-linux-gnu
#   apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
# This script sets CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc when it
# is unset; the packages come out as target/debian/*_arm64.deb (ring, the only C code, builds
# with the same cross compiler). dpkg-shlibdeps cannot read arm64 libraries without
# `dpkg --add-architecture arm64` and libc6:arm64, so Depends then falls back to what cargo-deb
# derives itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cargo-deb this packaging is written for (its systemd-units and sysusers support).
CARGO_DEB_VERSION=3.8.0

target=
dev=
while [ $# -gt 0 ]; do
    case "$1" in
    --target) target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    --dev) dev=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

have_cargo_deb() {
    cargo deb --version 2>/dev/null | grep -q " ${CARGO_DEB_VERSION}\$"
}
if ! have_cargo_deb; then
    echo "== installing cargo-deb ${CARGO_DEB_VERSION} (a build tool; not linked into roomgate)"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

deb_args=()
build_args=(--locked)
if [ -n "$target" ]; then
    deb_args+=(--target "$target")
    build_args+=(--target "$target")
    if [ "$target" = aarch64-unknown-linux-gnu ]; then
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
        # ring's C and assembly parts.
        export CC_aarch64_unknown_linux_gnu="${CC_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-gcc}"
        export AR_aarch64_unknown_linux_gnu="${AR_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-ar}"
    fi
fi

if [ -n "$dev" ]; then
    # The binaries exactly as `cargo test --workspace` builds them (the same feature
    # unification), so after tests/run this rebuilds nothing; a plain `cargo build -p ...`
    # would unify features differently and recompile the dependency tree.
    echo "== cargo test --workspace --no-run (dev binaries gateway, hub)"
    cargo test "${build_args[@]}" --workspace --no-run --quiet
    deb_args+=(--profile dev --fast)
else
    echo "== cargo build --release gateway, hub"
    cargo build "${build_args[@]}" --release -p gateway --bin gateway -p cloud-sync --bin hub
fi

mkdir -p target/debian
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for crate in gateway cloud-sync; do
    # Prints the package's path: target/debian/<package>_<version>-<revision>_<arch>.deb.
    if ! cargo deb --no-build -p "$crate" --output target/debian/ "${deb_args[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    # cargo-deb warns that dev packages are unsupported: --dev packages are for tests only.
    grep -v -e 'dev profile is not supported' -e 'To enable debug symbols set' "$log" || true
done
