#!/usr/bin/env bash
# Builds build/target-app.elf for the ESP32-C3 (RISC-V rv32imc) and dumps its loadable sections
# with the addresses they load at (build/manifest.json), for packages/bench's realisticImage().
# Without the toolchain it says what to install and leaves build/MISSING, so the bench and the
# hil can say why they fall back to the host image; it does not fail the build.
set -euo pipefail
cd "$(dirname "$0")"
CC=${RISCV_CC:-riscv64-unknown-elf-gcc}
mkdir -p build
rm -f build/MISSING
missing=
command -v "$CC" >/dev/null || missing="$CC (Debian/Ubuntu: apt-get install gcc-riscv64-unknown-elf)"
if [ -z "$missing" ] && ! "$CC" -print-file-name=picolibc.specs | grep -q /; then
  missing="picolibc for $CC (Debian/Ubuntu: apt-get install picolibc-riscv64-unknown-elf)"
fi
if [ -n "$missing" ]; then
  echo "firmware-target-image: not built, missing $missing" >&2
  echo "$missing" >build/MISSING
  exit 0
fi
cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=riscv.cmake -DCMAKE_BUILD_TYPE=MinSizeRel >/dev/null
cmake --build build -j2
