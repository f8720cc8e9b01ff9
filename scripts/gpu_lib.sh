# Shared set-up of the gpu_*.sh scripts, sourced after `set -uo pipefail`:
#   source "$(dirname "$0")/gpu_lib.sh" DEFAULT_LIMIT
# Checks OUT, sets LIMIT (default DEFAULT_LIMIT seconds) and start, puts src/ and benchmarks/ on PYTHONPATH,
# unbuffers Python's output, unsets TRITON_INTERPRET (the GPU compiles), and defines the time helpers
#   left        seconds left of LIMIT
#   cap W [R]   W, or less so that R seconds stay for what follows (at least 1)
#   run_tests W R PYTEST_ARGS...   pytest -q -n 8 into $OUT/tests.log for at most `cap W R` s, then its last line
#               and its failures
#   ncu_table CSV LABEL   one line per kernel and metric of an `ncu --csv` report: LABEL, kernel, grid, metric, value
OUT="${OUT:?set OUT}"
LIMIT="${LIMIT:-${1:-540}}"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
mkdir -p "$OUT"
start=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - start) )); }
cap() { local want=$1 l; l=$(( $(left) - ${2:-0} )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 1 ] && want=1; echo "$want"; }
run_tests() {
  local want=$1 rest=$2
  shift 2
  # SIGINT at the cap: pytest stops like on Ctrl-C and still prints its summary (the failures so far, by name)
  timeout -s INT -k 20 "$(cap "$want" "$rest")" python3 -m pytest -q -p no:cacheprovider -n 8 -rfEs "$@" > "$OUT/tests.log" 2>&1
  tail -1 "$OUT/tests.log"; grep -E "^FAILED|^ERROR" "$OUT/tests.log" | head
}
ncu_table() {
  python3 - "$1" "$2" <<'EOF'
import csv, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
if rows:
    head, body = rows[0], rows[1:]
    i = {k: head.index(k) for k in ("Kernel Name", "Grid Size", "Metric Name", "Metric Value")}
    for r in body:
        print(sys.argv[2], r[i["Kernel Name"]], r[i["Grid Size"]], r[i["Metric Name"]], r[i["Metric Value"]])
EOF
}
