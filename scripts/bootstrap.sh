#!/usr/bin/env bash
# Installs what the workspace needs on a fresh machine, then the workspace itself.
# Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")

say() { printf 'bootstrap: %s\n' "$*" >&2; }

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  say "Node $(node -v) is too old: install Node 20 or newer and run this again"
  exit 1
fi

# C toolchain for the firmware's host build (the simulated device) and its tests.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
[ -f /usr/include/openssl/sha.h ] || pkg-config --exists libcrypto 2>/dev/null || missing+=(libssl-dev)
[ -f /usr/include/zlib.h ] || pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}; macOS: brew install cmake openssl zlib) and run this again"
    exit 1
  fi
fi

# Optional: the RISC-V cross compiler and C library for firmware/target-image, the realistic
# app image the bench's deflate figures and a hil scenario use. Without them both say so and
# fall back to the host image.
optional=()
if ! command -v riscv64-unknown-elf-gcc >/dev/null; then
  optional+=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)
elif ! riscv64-unknown-elf-gcc -print-file-name=picolibc.specs | grep -q /; then
  optional+=(picolibc-riscv64-unknown-elf)
fi
if [ ${#optional[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${optional[*]} with apt-get (the realistic RISC-V image)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${optional[@]}" >/dev/null ||
      say "could not install ${optional[*]}: the bench and hil will use the host image for deflate figures"
  else
    say "optional, for the realistic RISC-V image of the bench and hil: ${optional[*]} (Debian/Ubuntu: sudo apt-get install ${optional[*]})"
  fi
fi

# Optional: clang and its libFuzzer runtime (compiler-rt) for the core's fuzz targets,
# firmware/host/fuzz/run.sh, which CI runs. Without them run.sh says so and skips the fuzzing.
libfuzzer_present() {
  command -v clang >/dev/null &&
    [ -f "$(clang -print-resource-dir)/lib/linux/libclang_rt.fuzzer-$(uname -m).a" ]
}
libfuzzer_packages() {
  if ! command -v clang >/dev/null; then
    echo clang
  elif ! libfuzzer_present; then
    echo "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
  fi
}
if ! libfuzzer_present; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # clang first: the runtime package is named after the clang version it brings.
    for _ in 1 2; do
      pkg=$(libfuzzer_packages)
      [ -n "$pkg" ] || break
      say "installing $pkg with apt-get (the fuzz targets in firmware/host/fuzz)"
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }; then
        say "could not install $pkg: firmware/host/fuzz/run.sh will skip the fuzzing"
        break
      fi
    done
  else
    say "optional, for the fuzz targets (firmware/host/fuzz/run.sh): clang and its libFuzzer runtime (Debian/Ubuntu: sudo apt-get install clang libclang-rt-14-dev, the libclang-rt-N-dev of your clang N; macOS: brew install llvm)"
  fi
fi

# Chromium for the browser page's tests (tools/web: Web Bluetooth against a simulated board
# through Chromium's fake adapter, and the protocol package run in a page). Without it those
# tests are skipped and say so.
if [ ! -x /usr/lib/chromium/chromium ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium with apt-get (the browser page's tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
      say "could not install chromium: the browser page's tests (tools/web) will be skipped"
  else
    say "optional, for the browser page's tests (tools/web): Chromium (Debian: sudo apt-get install chromium; Ubuntu's snap chromium: set CHROMIUM_PATH to its binary)"
  fi
fi

if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  say "installing pnpm $PNPM_VERSION"
  npm install -g --silent "pnpm@$PNPM_VERSION" >/dev/null
fi

# node-gyp downloads Node's headers unless told where they are. Distribution builds of Node
# (Debian's, for one) ship them in /usr/include/node; use them when they match this Node,
# so native addons (noble, the HCI socket, serialport) build without network access.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_version.h ]; then
  hdr=$(awk '/define NODE_(MAJOR|MINOR|PATCH)_VERSION/ {printf "%s.", $3}' /usr/include/node/node_version.h)
  if [ "${hdr%.}" = "$(node -p process.versions.node)" ]; then
    export npm_config_nodedir=/usr
  fi
fi

if [ -n "${CI:-}" ]; then
  pnpm install --frozen-lockfile
else
  pnpm install
fi
