#!/usr/bin/env bash
# The aarch64 build, under emulation, against the x86-64 one: the kernels and ops tests (every
# kernel against the portable one, the ops against their definitions), then a small
# sweep over every layer kind (tests/cross/specs), whose results.csv must equal the native
# run's byte for byte (on NEON and on the portable kernel).
#
# Needs the aarch64 Rust target, Debian's gcc-aarch64-linux-gnu and qemu-user; as root it
# installs them when missing (rustup target add, apt-get), and otherwise skips with the
# reason, unless LESSER_REQUIRE_CROSS=1 (as .ci/run sets it), which makes a skip a failure.
# Emulated timings mean nothing: this checks bits, not speed. By hand:
#   cargo build --release && bash tests/cross/run.sh
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

skip() {
  if [ "${LESSER_REQUIRE_CROSS:-}" = 1 ]; then
    echo "cross test failed: $1 (LESSER_REQUIRE_CROSS=1)"
    exit 1
  fi
  echo "cross test skipped: $1"
  exit 0
}

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" >/dev/null 2>&1 || skip "rustup could not add $target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || skip "gcc-aarch64-linux-gnu and qemu-user are not installed (and this is not root with apt-get)"
  echo "installing gcc-aarch64-linux-gnu and qemu-user"
  export DEBIAN_FRONTEND=noninteractive
  packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
  apt-get install -y -qq $packages >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $packages >/dev/null 2>&1; } \
    || skip "apt-get could not install $packages"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
cd "$repo"
set -e
# In-process tests only: a test that starts the binary cannot start an aarch64 one.
cargo test --release --target "$target" --lib kernels
cargo test --release --target "$target" --test ops
cargo build --release --target "$target"
t=$(mktemp -d /tmp/lesser-cross.XXXXXX)
trap 'rm -rf "$t"' EXIT
run() { "$@" run --quiet --specs tests/cross/specs --pairs 200 --data data/mnist --out "$t/$name"; }
name=x86 run target/release/lesser
name=neon run qemu-aarch64 -L "$sysroot" "target/$target/release/lesser"
name=portable LESSER_KERNEL=portable run qemu-aarch64 -L "$sysroot" "target/$target/release/lesser"
for arm in neon portable; do
  if ! cmp -s "$t/x86/results.csv" "$t/$arm/results.csv"; then
    echo "cross test failed: aarch64 ($arm) results.csv differs from x86-64's"
    diff "$t/x86/results.csv" "$t/$arm/results.csv"
    exit 1
  fi
done
echo "cross: aarch64 (neon, portable) results.csv equal to x86-64's, $(($(wc -l < "$t/x86/results.csv") - 1)) rounds"
