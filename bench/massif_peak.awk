# bench/run helper: summarises the peak snapshot of ms_print (valgrind massif) output: each top-level
# allocation site, and under it the first mukai frame of each call chain with the library function it called.
# Usage: ms_print --threshold=3.0 massif.out | awk -f massif_peak.awk
function short(t) {
  sub(/^0x[0-9A-Fa-f]+: /, "", t); gsub(/ \(in [^)]*\)/, "", t)
  gsub(/\(anonymous namespace\)/, "{anon}", t); sub(/\(.*$/, "", t); sub(/\[clone.*$/, "", t)
  gsub(/\{anon\}/, "(anon)", t); gsub(/\[abi:cxx11\]/, "", t); return t
}
/Detailed snapshots:/ { if (match($0, /[0-9]+ \(peak\)/)) peak = substr($0, RSTART, RLENGTH - 7) }
peak != "" && $1 == peak && $2 ~ /^[0-9,]+$/ { inpeak = 1; total = $3; gsub(/,/, "", total)
  printf "heap at the peak: %.1f MiB\n", total / 1048576; next }
inpeak && /^---/ { exit }
inpeak && /->/ {
  d = index($0, "->"); text = substr($0, d + 2)
  pct = text; sub(/ .*/, "", pct); bytes = text; sub(/^[^(]*\(/, "", bytes); sub(/B\).*/, "", bytes); gsub(/,/, "", bytes)
  fn = text; sub(/^[^)]*\) /, "", fn); fn = short(fn)
  mk[d] = (fn ~ /mukai::/); name[d] = (fn ~ /^\?\?\?/ && d > 1) ? name[d - 2] : fn
  if (d == 1) { printf "  %6s %7.1f MiB  %s\n", pct, bytes / 1048576, fn }
  else if (mk[d] && !mk[d - 2] && d > 1) { printf "      %6s %7.1f MiB  %s -> %s\n", pct, bytes / 1048576, fn, name[d - 2] }
}
