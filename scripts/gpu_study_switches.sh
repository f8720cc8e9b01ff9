#!/usr/bin/env bash
# Issue 10, twenty-seventh session: the study with the start-up switches that a fresh-interpreter check on this
# machine shows working (and faster). benchmarks/profile_compile.py runs the cold generation + likelihood
# warm-up with inductor's compile workers ready early + dynamo's nested graph breaks ("nested_pool"; with
# CHECK_VARIANTS=cold,nested_pool also with defaults); if that variant ran (and, when cold ran too, its generation
# warm-up was at least 1 s shorter), the study runs with ROPESHIFT_EARLY_POOL=1 ROPESHIFT_NESTED_BREAKS=1, else
# without. Then scripts/gpu_strided_study.sh as usual.
# Run (the last of the model calls, carry [.model2, .whl, .old]):
#   source scripts/gpu_env.sh; TESTS=0 BASE_TGZ=results/smollm2-135m_h100_2026-12-07c.tgz OUT=$OUT OLD_SRC=.old/src \
#     LIMIT=500 bash scripts/gpu_study_switches.sh
set -uo pipefail
OUT="${OUT:?set OUT}"
start=$(date +%s)
PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" timeout 120 python3 benchmarks/profile_compile.py \
  --out "$OUT/profile_compile" --variants "${CHECK_VARIANTS:-nested_pool}" > "$OUT/profile_compile.md" 2>&1
rm -rf /tmp/profile_compile_caches_*
tail -6 "$OUT/profile_compile.md"
on=$(python3 - "$OUT/profile_compile" <<'PY'
import json, pathlib, sys
res = {}
for f in pathlib.Path(sys.argv[1]).glob("*.log"):
    for line in f.read_text().splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:]); res[r["variant"]] = r
c, n = res.get("cold"), res.get("nested_pool")
print(1 if n and (c is None or n["generation"] < c["generation"] - 1) else 0)
PY
)
if [ "$on" = 1 ]; then export ROPESHIFT_EARLY_POOL=1 ROPESHIFT_NESTED_BREAKS=1; fi
echo "switches: ROPESHIFT_EARLY_POOL=${ROPESHIFT_EARLY_POOL:-unset} ROPESHIFT_NESTED_BREAKS=${ROPESHIFT_NESTED_BREAKS:-unset} (check $(( $(date +%s) - start )) s)" | tee "$OUT/switches.txt"
LIMIT=$(( ${LIMIT:-500} - ($(date +%s) - start) )) bash scripts/gpu_strided_study.sh
