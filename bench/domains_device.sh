#!/usr/bin/env bash
# Device run for bench/domains.py: the grid on one GPU, many runs at a time. Usage: bash .gpu/run.sh DEADLINE_S JOBS
# How bench/results/domains_h100_partial.md was made on the lent GPU machine (no network there): .gpu/ held the
# code (nerkit/, bench/), the base model as fp16 safetensors (model16/, under the 64 MiB transfer limit), the data as
# a tarball and wheels for datasets/seqeval/dill/multiprocess; the CoNLL-2003 transfer source is trained there first.
set -u
DEADLINE=${1:-420}; JOBS=${2:-14}
G=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $G/whl/* 2>&1 | tail -2
export PYTHONPATH=/tmp/site
mkdir -p /tmp/d && tar xzf $G/data/data.tgz -C /tmp/d
python3 -c "
import shutil,os,sys
from safetensors.torch import load_file, save_file
src='$G/model16'; dst='/tmp/model'; os.makedirs(dst, exist_ok=True)
for f in os.listdir(src):
    if f!='model.safetensors' and os.path.isfile(os.path.join(src,f)): shutil.copy(os.path.join(src,f), dst)
save_file({k:v.float() for k,v in load_file(src+'/model.safetensors').items()}, dst+'/model.safetensors', metadata={'format':'pt'})
import datasets, seqeval, torch, transformers; print('ok', torch.__version__, transformers.__version__, datasets.__version__, torch.cuda.get_device_name())
"
nvidia-smi --query-gpu=name,memory.used --format=csv
lscpu | grep -E 'Model name|^CPU\(s\)'
cd $G/code
export PYTHONPATH=/tmp/site:$PWD
# Transfer source: a CoNLL-2003 model with nerkit's defaults, then the transfer runs (own cache), beside the grid.
( python3 -m nerkit.cli train --train /tmp/d/data/conll2003/train.txt --dev /tmp/d/data/conll2003/valid.txt \
    --output /tmp/conll_model --model /tmp/model > $OUT/conll_transfer_source.log 2>&1 && \
  python3 bench/domains.py --data /tmp/d/data --recipe $G/classic_recipe.py --model /tmp/model --transfer /tmp/conll_model \
    --datasets finer-ord,bc5cdr --sizes 100,300,1000 --systems nerkit --jobs 3 --threads 1 --work /tmp/wt \
    --out /tmp/wt/out --deadline $DEADLINE > $OUT/transfer.log 2>&1 ) &
python3 bench/domains.py --data /tmp/d/data --recipe $G/classic_recipe.py --model /tmp/model --sizes 100,300,1000 \
    --class-weights --jobs $JOBS --threads 1 --work /tmp/w --out /tmp/w/out --deadline $DEADLINE > $OUT/grid.log 2>&1
wait
mkdir -p /tmp/res && cp /tmp/w/runs.jsonl /tmp/res/runs.jsonl; cp /tmp/wt/runs.jsonl /tmp/res/runs_transfer.jsonl
mv $OUT/*.log /tmp/res/ 2>/dev/null; cp -r /tmp/w/out /tmp/res/grid_out 2>/dev/null
tar czf $OUT/results.tgz -C /tmp res
# The CoNLL model (fp16 weights: 45 MB) in pieces under the 16 MiB limit per returned file.
python3 -c "
import os
from safetensors.torch import load_file, save_file
d='/tmp/conll_model'
if os.path.isfile(d+'/model.safetensors'):
    save_file({k:v.half() for k,v in load_file(d+'/model.safetensors').items()}, d+'/model.safetensors', metadata={'format':'pt'})
" && tar cf - -C /tmp conll_model | split -b 15m - $OUT/conll_model.tar.part
ls -la $OUT; tail -5 /tmp/res/grid.log; tail -3 /tmp/res/transfer.log
