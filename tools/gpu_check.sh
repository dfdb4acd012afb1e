#!/usr/bin/env bash
# The GPU check of the data-parallel engine, prepared on a CPU-only machine:
# one GPU with and without AMP (images/s of the search step, peak memory, the projected search
# time of NB201 at full scale), then a short end-to-end search and retraining on the GPU in bf16
# and fp16. Run from the repository root:  bash tools/gpu_check.sh  (about 5 minutes on one GPU).
set -euo pipefail
export PYTHONPATH="$PWD"
out="${TMPDIR:-/tmp}/nas-gpu-check"
rm -rf "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python tools/bench_dist.py --device cuda --layouts 1x4 --sizes proxy,full --amp off,bf16,fp16 \
    --steps 20 --warmup 5 --project 50
for amp in bf16 fp16; do
    python -m nas configs/quickstart.yaml device=cuda trainer.amp=$amp trainer.channels_last=true \
        trainer.epochs=2 --out "$out/search-$amp" --quiet
    python -m nas.commands.retrain configs/retrain_nb201_digits.yaml device=cuda trainer.amp=$amp \
        trainer.epochs=1 --genotype "$out/search-$amp" --out "$out/retrain-$amp" --quiet
done
# the scalers' state (fp16) is in the checkpoint; a resumed fp16 search continues from it
python -c "import torch; c = torch.load('$out/search-fp16/checkpoint.pt', weights_only=False); print('fp16 scales', {k: v.get('scale') for k, v in c['scalers'].items()})"
