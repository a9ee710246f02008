#!/usr/bin/env bash
# bench/domains.py on the lent GPU machine (no network there), many runs at a time, results back under $OUT.
# Usage, from the repository root with .gpu/ carried: bash bench/domains_device.sh LAUNCH_DEADLINE_S KILL_S JOBS -- ARGS
# .gpu/ (ignored, under the 64 MiB transfer limit) holds: code/ (a copy of nerkit/ and bench/), model16/ (the base
# model, fp16 safetensors; widened back to fp32 here), data/data.tgz (../shared/data), whl/ (datasets, seqeval, dill,
# multiprocess: what the machine's Python lacks) and classic_recipe.py. Runs that finish are in $OUT/runs.jsonl
# whatever happens; at KILL_S seconds everything still running is stopped so that the results come back in time.
set -u
DEADLINE=${1:-380}; KILL=${2:-470}; JOBS=${3:-15}; shift 3; [ "${1:-}" = "--" ] && shift
G=$(pwd)/.gpu
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $G/whl/* 2>&1 | tail -2
export PYTHONPATH=/tmp/site
mkdir -p /tmp/d && tar xzf $G/data/data.tgz -C /tmp/d
python3 -c "
import shutil,os
from safetensors.torch import load_file, save_file
src='$G/model16'; dst='/tmp/model'; os.makedirs(dst, exist_ok=True)
for f in os.listdir(src):
    if f!='model.safetensors' and os.path.isfile(os.path.join(src,f)): shutil.copy(os.path.join(src,f), dst)
save_file({k:v.float() for k,v in load_file(src+'/model.safetensors').items()}, dst+'/model.safetensors', metadata={'format':'pt'})
import datasets, seqeval, torch, transformers; print('ok', torch.__version__, transformers.__version__, torch.cuda.get_device_name())
"
lscpu | grep -E 'Model name|^CPU\(s\)'
cd $G/code
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/w
timeout $KILL python3 bench/domains.py --data /tmp/d/data --recipe $G/classic_recipe.py --model /tmp/model \
    --jobs $JOBS --threads 1 --work /tmp/w --out /tmp/w/out --deadline $DEADLINE "$@" > $OUT/domains.log 2>&1
pkill -f nerkit.cli; pkill -f classic_recipe.py
cp /tmp/w/runs.jsonl $OUT/runs.jsonl
grep -c . $OUT/runs.jsonl; tail -4 $OUT/domains.log
