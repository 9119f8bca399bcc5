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

# 3. Fast student distilled from the BSGD sampler. distill always runs the teacher in bsgd mode with
#    its stored knobs: give a copy of runs/default/model.safetensors the chosen ones first.
.venv/bin/python - <<'EOF'
from bsgd_cli.checkpoint import load_model, save_model
from bsgd_cli.config import SamplerConfig
m = load_model("runs/default/model.safetensors")
save_model("runs/teacher.safetensors", m.model, info=m.info, sampler=SamplerConfig(
    mode="bsgd", guidance=0.5, steps=2, t_start=0.05, runs=2, replace_prob=0.16, mask="iid"))
EOF
$BSGD distill --noisy-dir "$DATA/train/dnd" --model runs/teacher.safetensors -o runs/distill \
    --steps 1500 --crops-per-image 2 --crop 128

# 4. Second ablation: the Wiener refinement on each mode's output, whole 512x512 images
#    (docs/ablation-wiener.md); then store the chosen defaults in the shipped file.
.venv/bin/python scripts/ablation.py --model runs/distill/model.safetensors \
    --set polyu="$DATA/pairs/polyu" --set pairs="$DATA/pairs/nam25" --grid wiener --limit 30 --crop 0 \
    --precision auto --out docs/ablation-wiener
.venv/bin/python - <<'EOF'
from bsgd_cli.checkpoint import load_model, save_model
from bsgd_cli.config import SamplerConfig
m = load_model("runs/distill/model.safetensors")
save_model("bsgd_cli/models/default.safetensors", m.model, info=m.info, sampler=SamplerConfig(
    mode="bsgd", guidance=0.5, steps=2, t_start=0.05, runs=2, replace_prob=0.16, mask="iid",
    refine="wiener", wiener_passes=1, wiener_noise=3.0, wiener_chroma=6.0, wiener_patch=16,
    wiener_stride=4, wiener_chroma_patch=32, wiener_chroma_stride=8, strength=1.0))
EOF

# 4b. Third ablation: the Wiener step's colour planes, block size and noise scales, on cached
#     network outputs (docs/ablation-colour.md); it chose opponent planes, 16/4 blocks and noise 3.
.venv/bin/python scripts/wiener_sweep.py --set polyu=polyu:"$DATA/pairs/polyu" \
    --set nam=pairs:"$DATA/pairs/nam25" --limit 40 --modes bsgd,fast --cache runs/pilots --grid third \
    --out docs/ablation-colour
# 4c. Fourth ablation: larger blocks for the colour planes (docs/ablation-chroma-blocks.md); it chose
#     the colour planes' 32/8 blocks and x6 noise stored above.
.venv/bin/python scripts/wiener_sweep.py --set polyu=polyu:"$DATA/pairs/polyu" \
    --set nam=pairs:"$DATA/pairs/nam25" --limit 40 --modes fast --cache runs/pilots --grid fourth \
    --out docs/ablation-chroma-blocks

# 5. Benchmarks (docs/BENCHMARKS.md) with the stored defaults (Wiener refinement on).
D="$DATA/pairs"
$BSGD benchmark --dataset polyu --root "$D/polyu" --methods noisy,nlm,fast,bsn,bsgd --device cpu --out bench-out/v7-polyu
$BSGD benchmark --dataset pairs --root "$D/nam25" --methods noisy,nlm,fast,bsn,bsgd --device cpu --out bench-out/v7-nam25
$BSGD benchmark --dataset sidd-pair --root "$D/sidd-danet" --methods noisy,nlm,fast,bsn,bsgd --device cpu --out bench-out/v7-sidd
$BSGD benchmark --speed --megapixels 2 --methods nlm,fast,bsn,bsgd --device cpu --out bench-out/v7-speed
$BSGD benchmark --speed --megapixels 50 --methods fast --device cpu --out bench-out/v7-speed50
