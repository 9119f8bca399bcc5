#!/usr/bin/env bash
# How the embedded default model (bsgd_cli/models/default.safetensors) and the numbers in
# docs/BENCHMARKS.md were produced, on a 2-core CPU with no GPU. Run from the repository root.
set -euo pipefail
DATA=${DATA:-../shared/data}
BSGD=.venv/bin/bsgd

# 1. Both branches, self-supervised on 160 noisy DND crops (no clean images). The run was resumed
#    twice with a new --steps total (4500 -> 3000 -> 2500 after restarting with the residual head);
#    resuming with another --steps only re-targets the cosine decay.
$BSGD train --noisy-dir "$DATA/train/dnd" -o runs/default --preset small --steps 2500 --batch 8 \
    --patch 120 --precision bf16 --val-every 250 --checkpoint-every 250 --log-every 50 --seed 0

# 2. Sampler ablation on centre crops of PolyU and Nam (docs/ablation.md).
.venv/bin/python scripts/ablation.py --model runs/default/model.safetensors \
    --set polyu="$DATA/pairs/polyu" --set pairs="$DATA/pairs/nam25" --limit 8 --crop 256 --out docs/ablation

# 3. Fast student distilled from the BSGD sampler with the chosen defaults.
$BSGD distill --noisy-dir "$DATA/train/dnd" --model runs/default/model.safetensors -o runs/distill \
    --steps 1500 --crops-per-image 1 --crop 128

# 4. Benchmarks (docs/BENCHMARKS.md).
for set in "polyu $DATA/pairs/polyu" "pairs $DATA/pairs/nam25" "sidd-pair $DATA/pairs/sidd-danet"; do
    read -r kind root <<<"$set"
    $BSGD benchmark --dataset "$kind" --root "$root" --methods noisy,nlm,bsn,fast \
        --model bsgd_cli/models/default.safetensors --device cpu --out "bench-out/$(basename "$root")"
done
$BSGD benchmark --speed --megapixels 2 --methods nlm,fast,bsn,bsgd --device cpu --out bench-out/speed
