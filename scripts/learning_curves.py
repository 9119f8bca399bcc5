"""Learning curves of the blind-spot branch: PSNR on the tuning split against wall-clock training time.

Why the blind-spot branch barely learned (issue 17): this trains the branch alone, for a fixed time,
with one setting changed at a time, and measures what users get from it (``bsn`` mode: B(y, 0)
through PD stride 2) in PSNR on the *tuning split* only:

* ``--set sidd``: strong real phone noise (SIDD, noisy 16 dB), where the neighbour mean is a poor
  denoiser and learning must show quickly. Trains on the noisy SIDD blocks of ../shared/data/noisy/
  sidd-blocks plus the SIDD pair's noisy half († protocol: a self-supervised method may train on the
  test set's own noisy images), scores the SIDD pair.
* ``--set dnd``: the mild DND noise of the default model; trains on the 160 noisy DND crops, scores
  centre crops of PolyU pairs 1-40 (every 4th, 10 pairs, 256 x 256).

The learning rate is warmed up and then held constant, and the EMA weights are scored after 0, 150, 300,
600, 1200 ... training patches and at the end, so a curve shows what more training gives. The budget is
in patches, not minutes, so runs sharing the machine with other work still compare; patches/s is
logged too, but only a run on an idle machine measures throughput. One JSON line per evaluation
goes to ``--out``; ``--table`` prints a Markdown table of every curve file given.

    .venv/bin/python scripts/learning_curves.py --set sidd --variant base --patches 2400 \
        --out runs/curves/sidd-base.jsonl
    .venv/bin/python scripts/learning_curves.py --table runs/curves/*.jsonl
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bsgd_cli.benchmark.metrics import psnr_uint8
from bsgd_cli.config import PRESETS, ModelConfig, SamplerConfig, TrainConfig
from bsgd_cli.engine.fusion import fusion_pass
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.engine.runtime import autocast_context
from bsgd_cli.training.data import NoisyImagePool, sample_patches
from bsgd_cli.training.losses import blind_spot_loss_given, draw_noise
from bsgd_cli.training.optim import ema_update

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Each variant changes one thing from "base" (the shipped default run's settings).
VARIANTS: dict[str, dict[str, dict]] = {
    "base": {},
    "t0": {"train": {"t_zero_prob": 1.0}},
    "tlow": {"train": {"t_zero_prob": 0.5, "t_max": 0.1}},
    "lr1e-3": {"train": {"lr": 1e-3}},
    "lr1e-4": {"train": {"lr": 1e-4}},
    "fp32": {"train": {"precision": "fp32"}},
    "l2": {"train": {"bsn_loss": "l2"}},
    "noresid": {"net": {"residual": False}},
    "pd3": {"net": {"pd_train": 3}, "train": {"patch": 120}},
    "pd2": {"net": {"pd_train": 2}, "train": {"patch": 120}},
    "deep": {"net": {"mults": (1, 1, 2, 2)}},
    "deeper": {"net": {"mults": (1, 1, 2, 2, 2), "blocks_per_level": 2}},
    "wide": {"net": {"width": 48, "head_width": 96}},
    "blocks2": {"net": {"blocks_per_level": 2}},
    "narrow": {"net": {"width": 16, "head_width": 32}},
    "p60b32": {"train": {"patch": 60, "batch": 32}},
    "p240b2": {"train": {"patch": 240, "batch": 2}},
    "b32": {"train": {"batch": 32}},
}


def parse_variant(spec: str) -> tuple[dict, dict]:
    """``a+b`` combines named variants; returns (net overrides, train overrides)."""
    net: dict = {}
    train: dict = {}
    for name in spec.split("+"):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        net.update(VARIANTS[name].get("net", {}))
        train.update(VARIANTS[name].get("train", {}))
    return net, train


def load_eval(kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy float32 HxWx3 in [0, 1], clean uint8) pairs of the tuning split."""
    if kind == "sidd":
        import scipy.io

        root = SHARED / "pairs" / "sidd-danet"
        noisy = scipy.io.loadmat(root / "noisy.mat")["im_noisy"]
        clean = scipy.io.loadmat(root / "gt.mat")["im_gt"]
        return [(noisy.astype(np.float32) / 255.0, clean)]
    from PIL import Image

    root = SHARED / "pairs" / "polyu"
    real = sorted(root.glob("*_real.JPG"))[:40][::4]
    pairs = []
    for path in real:
        noisy = np.asarray(Image.open(path).convert("RGB"))
        clean = np.asarray(Image.open(str(path).replace("_real", "_mean")).convert("RGB"))
        y, x = (noisy.shape[0] - 256) // 2, (noisy.shape[1] - 256) // 2
        pairs.append((noisy[y : y + 256, x : x + 256].astype(np.float32) / 255.0, clean[y : y + 256, x : x + 256]))
    return pairs


def training_pool(kind: str, tmp: Path) -> NoisyImagePool:
    if kind == "dnd":
        return NoisyImagePool.from_folder(SHARED / "train" / "dnd", min_side=128)
    # SIDD: the noisy blocks plus the SIDD pair's noisy half, written as PNGs into a scratch folder.
    import shutil

    import scipy.io
    from PIL import Image

    tmp.mkdir(parents=True, exist_ok=True)
    for path in (SHARED / "noisy" / "sidd-blocks").glob("*.png"):
        shutil.copy(path, tmp / path.name)
    noisy = scipy.io.loadmat(SHARED / "pairs" / "sidd-danet" / "noisy.mat")["im_noisy"]
    Image.fromarray(noisy).save(tmp / "sidd_pair_noisy.png")
    return NoisyImagePool.from_folder(tmp, min_side=128)


@torch.no_grad()
def score(model: BsgdModel, pairs: list[tuple[np.ndarray, np.ndarray]], stride: int, fused: bool = False) -> float:
    """Mean PSNR of B(y, 0) through PD ``stride``; ``fused``: with the ``bsn`` mode's fusion (default settings)."""
    model.eval()
    values = []
    for noisy, clean in pairs:
        y = torch.from_numpy(noisy).permute(2, 0, 1)[None] * 2 - 1
        out = model.blind_spot(y, torch.zeros(1), stride)
        if fused:
            settings = SamplerConfig()
            out = ((out + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy()
            out = fusion_pass(noisy, out.copy(), settings.bsn_fusion_window, settings.bsn_fusion_scale)
            out = torch.from_numpy(out).permute(2, 0, 1)[None] * 2 - 1
        values.append(psnr_uint8(clean, ((out[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()))
    return float(np.mean(values))


def initialised(model_config: ModelConfig, name: str) -> BsgdModel:
    """A model of ``model_config`` whose blind-spot branch starts from model ``name``'s."""
    from bsgd_cli.checkpoint import load_model
    source = load_model(name).model
    model = BsgdModel(model_config)
    net = source.blind_spot_net
    if dataclasses.replace(net.config, pd_train=model_config.blind_spot.pd_train) != model_config.blind_spot:
        raise SystemExit(f"--init {name}: its blind-spot branch {net.config} differs from {model_config.blind_spot}")
    model.blind_spot_net.load_state_dict(net.state_dict())
    return model


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    net_over, train_over = parse_variant(args.variant)
    base_net = PRESETS["small"].blind_spot
    net = dataclasses.replace(base_net, **net_over)
    config = dataclasses.replace(TrainConfig(precision="bf16", branch="bsn"), **train_over)
    model_config = dataclasses.replace(ModelConfig(), blind_spot=net)
    torch.manual_seed(args.seed)
    model = BsgdModel(model_config)
    if args.init:
        model = initialised(model_config, args.init)
    ema = copy.deepcopy(model).eval()
    params = list(model.blind_spot_net.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    pool = NoisyImagePool.from_folder(Path(args.train_dir), min_side=128) if args.train_dir else \
        training_pool(args.set, Path(args.scratch) / args.set)
    pairs = load_eval(args.set)
    rng = np.random.default_rng([args.seed, 2])
    generator = torch.Generator().manual_seed(args.seed + 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = args.variant + (f"@{args.init}" if args.init else "") + (" on " + args.train_dir if args.train_dir else "")
    header = {"variant": name, "set": args.set, "net": dataclasses.asdict(net),
              "train": dataclasses.asdict(config), "threads": args.threads,
              "params": sum(p.numel() for p in params),
              "noisy_psnr": float(np.mean([psnr_uint8(c, n) for n, c in pairs]))}
    checkpoints = [0] + [150 * 2**k for k in range(16)]
    checkpoints = [p for p in checkpoints if p < args.patches] + [args.patches]
    seconds, step, patches, losses = 0.0, 0, 0, []
    with out.open("w") as handle:
        handle.write(json.dumps({"header": header}) + "\n")

        def record() -> None:
            started = time.perf_counter()
            row = {"minutes": round(seconds / 60, 3), "step": step, "patches": patches,
                   "patches_per_s": round(patches / max(seconds, 1e-9), 2),
                   "loss": float(np.mean(losses)) if losses else None,
                   "psnr_pd2": round(score(ema, pairs, 2), 3)}
            if args.set == "sidd":
                row["psnr_pd5"] = round(score(ema, pairs, 5), 3)
            if args.fused:
                row["psnr_fused"] = round(score(ema, pairs, 2, fused=True), 3)
            row["eval_s"] = round(time.perf_counter() - started, 1)
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            print(json.dumps(row), file=sys.stderr, flush=True)
            losses.clear()

        record()
        for target in checkpoints[1:]:
            while patches < target:
                started = time.perf_counter()
                model.train()
                lr = config.lr * min(1.0, (step + 1) / config.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = sample_patches(pool, rng, config.batch, config.patch, photometric_augment=config.photometric)
                noisy = torch.from_numpy(batch) * 2 - 1
                t, eps = draw_noise(noisy.shape, generator, config.t_max, config.t_zero_prob)
                with autocast_context(torch.device("cpu"), config.precision):
                    loss = blind_spot_loss_given(model, noisy, t, eps, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                ema_update(ema, model, step, config.ema)
                step += 1
                patches += config.batch
                losses.append(float(loss.detach()))
                seconds += time.perf_counter() - started
            record()
    if args.save:
        save(ema, args.init, config, args.save)


def save(ema: BsgdModel, init: str | None, config: TrainConfig, path: str) -> None:
    """The EMA blind-spot branch inside a copy of model ``init`` (its other branches, student and sampler)."""
    from bsgd_cli.checkpoint import load_model, save_model

    if init is None:
        raise SystemExit("--save needs --init: the other branches come from that model")
    source = load_model(init)
    model = copy.deepcopy(source.model)
    model.config = dataclasses.replace(model.config, blind_spot=ema.config.blind_spot)
    model.blind_spot_net = copy.deepcopy(ema.blind_spot_net)
    info = {**source.info, "blind_spot_finetune": {"from": str(source.path), "train_config": dataclasses.asdict(config),
                                                    "script": "scripts/learning_curves.py"}}
    save_model(Path(path), model, sampler=source.sampler, info=info)


def table(paths: list[str]) -> None:
    rows = []
    for path in paths:
        lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        header, evals = lines[0]["header"], lines[1:]
        if not evals:
            continue
        first, last = evals[0], evals[-1]
        best = max(e["psnr_pd2"] for e in evals)
        curve = " ".join(f"{e['psnr_pd2']:.2f}" for e in evals)
        rows.append((header["set"], header["variant"], header["params"], last["patches_per_s"], last["patches"],
                     first["psnr_pd2"], last["psnr_pd2"], best, last.get("psnr_pd5"), last.get("psnr_fused"),
                     header["noisy_psnr"], curve))
    print("| set | variant | params | patches/s | patches | start | end | best | end, PD5 | end, fused | noisy "
          "| curve (PD2) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    show = lambda value: "" if value is None else f"{value:.2f}"  # noqa: E731
    for r in sorted(rows):
        print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:.1f} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} | "
              f"{show(r[8])} | {show(r[9])} | {r[10]:.2f} | {r[11]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("sidd", "dnd"), default="sidd")
    parser.add_argument("--variant", default="base", help="a name or names joined by +: " + ", ".join(VARIANTS))
    parser.add_argument("--patches", type=int, default=2400, help="training budget in patches")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fused", action="store_true", help="also score the bsn mode's fusion with the pixel")
    parser.add_argument("--train-dir", default=None, help="train on this folder of noisy images instead of the set's")
    parser.add_argument("--save", default=None, help="write the model (with --init's other branches) here at the end")
    parser.add_argument("--init", default=None, help="start the blind-spot branch from this model (e.g. default)")
    parser.add_argument("--scratch", default="runs/curves-scratch")
    parser.add_argument("--out", default=None)
    parser.add_argument("--table", nargs="*", help="print a Markdown table of these curve files and exit")
    args = parser.parse_args()
    if args.table is not None:
        table(args.table)
        return
    args.out = args.out or f"runs/curves/{args.set}-{args.variant}.jsonl"
    run(args)


if __name__ == "__main__":
    main()
