#!/usr/bin/env bash
# After ../shared/idf-build/check.sh ran with VARIANTS=firmware/configs: did kconfgen give every
# option of each firmware/configs/*.defaults the value the file asks for (an option whose
# dependencies are off is silently dropped)? Exit 1 on any mismatch or kconfgen warning.
#   firmware/configs/audit.sh            (W as the check's work folder, default $TMPDIR/idf-build)
set -u
W=${W:-${TMPDIR:-/tmp}/idf-build}
here=$(cd "$(dirname "$0")" && pwd)
fail=0
for f in "$here"/*.defaults; do
  n=$(basename "$f" .defaults)
  cfg=$W/variants/$n/sdkconfig
  if [ ! -f "$cfg" ]; then echo "$n: no $cfg (run the check with VARIANTS=firmware/configs first)"; fail=1; continue; fi
  bad=0
  if grep -qiE 'warning' "$W/variants-$n.kconfgen.log" 2>/dev/null; then
    grep -iE 'warning' "$W/variants-$n.kconfgen.log"; bad=1
  fi
  while IFS= read -r line; do
    case "$line" in \#*|"") continue ;; esac
    k=${line%%=*}; v=${line#*=}
    if [ "$v" = n ]; then
      if grep -q "^$k=" "$cfg"; then echo "$n: $k asked n, got $(grep "^$k=" "$cfg")"; bad=1; fi
    elif ! grep -qxF "$k=$v" "$cfg"; then
      echo "$n: $k asked $v, got $(grep "^$k=" "$cfg" || echo 'not set')"; bad=1
    fi
  done < "$f"
  [ $bad = 0 ] && echo "$n: every option as asked" || fail=1
done
exit $fail
