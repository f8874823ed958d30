#!/usr/bin/env bash
# Builds the core's libFuzzer targets with clang (ASan + UBSan), runs them, and prints what they
# did: executions, exec/s, libFuzzer's edge coverage, and line/function coverage per C file of
# the core (clang source-based coverage over the corpus the run left). README.md says more.
#
#   run.sh                 short run, as CI runs it: fuzz-gatt 45 s, fuzz-boot 20 s, fuzz-patch 15 s
#   run.sh --long [SEC]    each target SEC seconds (default 150: about five minutes in all)
#   run.sh --update-seeds  writes the seed corpus (corpus/) again with fuzz-seedgen, then stops
#
# Without clang, or without its libFuzzer runtime, it says what to install and exits 0.
# Exit 1 when a target found a crash or an invariant broke: the input is saved in crashes/ and
# the report printed; exit 2 for a bad command line. BLE_OTA_FUZZ_BUILD moves the build
# directory (default: build/ here, which git ignores; the corpus the runs grow stays there),
# BLE_OTA_FUZZ_CC names another clang.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${BLE_OTA_FUZZ_BUILD:-$here/build}
cc=${BLE_OTA_FUZZ_CC:-clang} # not $CC: that is often gcc, which has no libFuzzer
mode=short
gatt_seconds=45
boot_seconds=20
patch_seconds=15

say() { printf 'fuzz: %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
  --long)
    mode=long
    gatt_seconds=150
    boot_seconds=150
    patch_seconds=150
    if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then
      gatt_seconds=$2
      boot_seconds=$2
      patch_seconds=$2
      shift
    fi
    ;;
  --update-seeds) mode=seeds ;;
  -h | --help)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    say "unknown argument '$1' (use --long [SECONDS] or --update-seeds)" >&2
    exit 2
    ;;
  esac
  shift
done

if ! command -v "$cc" >/dev/null 2>&1; then
  say "clang is not installed, so the fuzz targets were neither built nor run."
  say "Install it (Debian/Ubuntu: sudo apt-get install clang libclang-rt-14-dev, or the libclang-rt-N-dev of your clang N; macOS: brew install llvm, then BLE_OTA_FUZZ_CC=\$(brew --prefix llvm)/bin/clang) and run this again."
  exit 0
fi
major=$("$cc" -dumpversion | cut -d. -f1)
# libFuzzer is part of compiler-rt, which Debian ships apart from clang (libclang-rt-N-dev).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1; then
  say "$cc cannot link libFuzzer (-fsanitize=fuzzer), so the fuzz targets were neither built nor run:"
  sed 's/^/  /' "$probe/log" | head -5
  say "Install clang's runtime libraries (Debian/Ubuntu: sudo apt-get install libclang-rt-$major-dev) and run this again."
  exit 0
fi
llvm_tool() {
  local t
  for t in "$1-$major" "/usr/lib/llvm-$major/bin/$1" "$1"; do
    if command -v "$t" >/dev/null 2>&1; then
      command -v "$t"
      return 0
    fi
  done
  return 1
}

configure_and_build() { # dir, extra cmake arguments...
  local dir=$1
  shift
  if ! { cmake -S "$here" -B "$dir" -DCMAKE_C_COMPILER="$cc" "$@" && cmake --build "$dir" -j2; } >"$dir.log" 2>&1; then
    cat "$dir.log" >&2
    say "the build failed (log above, also in $dir.log)" >&2
    exit 1
  fi
}

mkdir -p "$build"
say "building with $("$cc" --version | head -1) in $build"
configure_and_build "$build/asan"

# The seeds are transcripts of real sessions with today's core: fuzz-seedgen plays them and
# stops if one does not end as it must, so this is also a test of the core.
rm -rf "$build/seeds"
if ! "$build/asan/fuzz-seedgen" "$build/seeds" >"$build/seeds.log" 2>&1; then
  cat "$build/seeds.log" >&2
  say "fuzz-seedgen could not play a session to its end (above): the core or the harness changed" >&2
  exit 1
fi
if [ "$mode" = seeds ]; then
  for t in gatt boot; do
    rm -rf "${here:?}/corpus/$t"
    mkdir -p "$here/corpus/$t"
    cp "$build/seeds/$t/"*.bin "$here/corpus/$t/"
  done
  say "seed corpus written to $here/corpus:"
  sed 's/^/  /' "$build/seeds.log"
  exit 0
fi

failed=0
summary=()
run_target() { # name, seconds
  local name=$1 seconds=$2 log="$build/$1.log" rc=0
  local corpus="$build/corpus/$name"
  local seeds=()
  mkdir -p "$corpus" "$here/crashes"
  if [ -d "$build/seeds/$name" ]; then
    seeds+=("$build/seeds/$name") # fuzz-seedgen writes none for fuzz-patch: its seeds are corpus/patch
  fi
  if [ -d "$here/corpus/$name" ]; then
    seeds+=("$here/corpus/$name")
  fi
  say "fuzz-$name for ${seconds} s (corpus $corpus, seeds corpus/$name and fresh ones)"
  "$build/asan/fuzz-$name" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$here/crashes/$name-" "$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  local execs eps last cov ft units
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1 || true)
  cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  summary+=("$(printf '%-10s %12s %8s %10s %10s %10s %8s' "fuzz-$name" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
    "$(find "$corpus" -type f | wc -l)" "${units:-?}")")
  if [ "$rc" -ne 0 ]; then
    failed=1
    say "fuzz-$name FAILED (exit $rc). The report:"
    { grep -n -E 'INVARIANT VIOLATED|ERROR: |runtime error|SUMMARY|#[0-9]+ 0x' "$log" || tail -20 "$log"; } | head -40 |
      sed 's/^/  /'
    local artifact
    artifact=$(ls -t "$here/crashes/$name-"* 2>/dev/null | head -1 || true)
    if [ -n "$artifact" ]; then
      say "reproducer: $artifact; replay it with: $build/asan/fuzz-$name $artifact"
    fi
    say "full log: $log"
  fi
}
run_target gatt "$gatt_seconds"
run_target boot "$boot_seconds"
run_target patch "$patch_seconds"

echo
printf '%-10s %12s %8s %10s %10s %10s %8s\n' target executions exec/s edges features corpus new
printf '%s\n' "${summary[@]}"

# Line and function coverage of the core, per C file, over the corpus this run left.
profdata=$(llvm_tool llvm-profdata || true)
llvmcov=$(llvm_tool llvm-cov || true)
if [ -z "$profdata" ] || [ -z "$llvmcov" ]; then
  say "no llvm-profdata/llvm-cov for clang $major (Debian: apt-get install llvm-$major): no coverage per file"
else
  configure_and_build "$build/cov" -DBLE_OTA_FUZZ_COVERAGE=ON
  core=$(sed -n 's/^BLE_OTA_FUZZ_COMPONENT_DIR:PATH=//p' "$build/cov/CMakeCache.txt")/src/core
  # llvm-cov report's columns: regions, missed, cover, functions, missed, executed, lines, missed,
  # cover, branches, missed, cover
  table='/\.c / || /^TOTAL/ { printf "  %-16s lines %7s (%4d of %4d)  functions %7s (%2d of %2d)  branches %7s  regions %7s\n", $1, $10, $8 - $9, $8, $7, $5 - $6, $5, $13, $4 }'
  for t in gatt boot patch; do
    rm -f "$build/cov/$t.profraw"
    LLVM_PROFILE_FILE="$build/cov/$t.profraw" "$build/cov/fuzz-$t" -runs=0 "$build/corpus/$t" \
      "$([ -d "$build/seeds/$t" ] && echo "$build/seeds/$t" || echo "$here/corpus/$t")" \
      >"$build/cov/$t.replay.log" 2>&1 || true
    "$profdata" merge -sparse "$build/cov/$t.profraw" -o "$build/cov/$t.profdata"
    echo
    say "coverage of the core by fuzz-$t's corpus ($(find "$build/corpus/$t" -type f | wc -l) inputs plus the seeds):"
    "$llvmcov" report "$build/cov/fuzz-$t" -instr-profile="$build/cov/$t.profdata" "$core"/*.c | awk "$table"
  done
  "$profdata" merge -sparse "$build/cov/gatt.profraw" "$build/cov/boot.profraw" "$build/cov/patch.profraw" \
    -o "$build/cov/all.profdata"
  echo
  say "coverage of the core by the three corpora together:"
  "$llvmcov" report "$build/cov/fuzz-gatt" -object "$build/cov/fuzz-boot" -object "$build/cov/fuzz-patch" \
    -instr-profile="$build/cov/all.profdata" \
    "$core"/*.c | awk "$table"
fi
if [ "$failed" -ne 0 ]; then
  say "a target failed: see the report above"
  exit 1
fi
say "no invariant broke, no sanitizer report ($mode run)"
