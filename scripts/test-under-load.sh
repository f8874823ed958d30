#!/usr/bin/env bash
# Proves that the README's test command holds on a busy machine: runs `pnpm test` RUNS times
# (default 3), each with every turbo task executed again (--force, no cache hits), while one
# CPU-bound process per core competes for the CPU the whole time.
#   scripts/test-under-load.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
case "$runs" in
  '' | *[!0-9]* | 0)
    echo "test-under-load: RUNS must be a whole number of 1 or more, got '$runs'" >&2
    exit 2
    ;;
esac
cores=$(node -p 'require("node:os").availableParallelism()')

hogs=()
stop_hogs() { [ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null || true; }
trap stop_hogs EXIT
for _ in $(seq "$cores"); do
  node -e 'for (;;) {}' &
  hogs+=($!)
done
echo "test-under-load: ${#hogs[@]} CPU-bound processes on $cores cores; pnpm test --force x $runs" >&2

for i in $(seq "$runs"); do
  started=$(date +%s)
  if ! pnpm test --force; then
    echo "test-under-load: run $i of $runs FAILED after $(($(date +%s) - started)) s under load" >&2
    exit 1
  fi
  echo "test-under-load: run $i of $runs green in $(($(date +%s) - started)) s under load" >&2
done
