"""How far could better targets take the `fast` student? A diagnostic for issue 17's 38.8 dB target.

The rounds of self-distillation level off near their teacher (docs/LEARNING.md). Whether a better teacher
(GPU-scale training of the branches) could lift the student past that depends on how much the student
itself can gain from better targets. This script measures it on the tuning split only, with two folds of
PolyU 1-40 (sorted by name: images 1-20 and 21-40). The model's student is fine-tuned on one fold's noisy
images, once per arm, with the same recipe and number of steps, then scored on the other fold:

* ``clean``: the fold's clean references as targets. No user has these: it is the ceiling any teacher's
  targets could give this student on images of the same cameras. A diagnostic, never shipped.
* ``teacher``: the model's own stored pipeline (its mode with the Wiener step, as ``bsgd distill
  --teacher-wiener`` runs it) on the same noisy images: one more round of self-distillation on the cameras
  being scored, as ``bsgd train --noisy-dir`` on one's own captures would do.

* ``colour``: no training; a global colour map (3x3 and an offset, least squares) from the student's
  output (and, apart, from its pipeline's) to the clean references of the training fold, applied to the
  scored fold. PolyU's references are means of ~500 JPEG shots and may differ from one shot in tone as
  well as in noise; this row shows how much of the ``clean`` arm's gain such a global difference alone
  could explain. Also a diagnostic.

Rows: the model's student before fine-tuning, its stored pipeline (the teacher itself), and each arm,
alone and with the Wiener step at the student's stored scale. An arm's model already under ``--out``
is reused (delete it to train again).

    .venv/bin/python scripts/target_ceiling.py --train-fold 1-20 --steps 6000 --out runs/ceiling/a
    .venv/bin/python scripts/target_ceiling.py --train-fold 21-40 --steps 6000 --out runs/ceiling/b
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from protocol import load_set, pilot, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model, save_model
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.model import LoadedModel
from bsgd_cli.engine.runtime import resolve_runtime
from bsgd_cli.training.distill import DistillConfig, Pairs, _student_model, _to_uint16, train_student

FOLDS = {"1-20": slice(0, 20), "21-40": slice(20, 40)}


def folds(train_fold: str) -> tuple[list, list]:
    """(training samples, scored samples) of PolyU 1-40: the named fold and the other one."""
    samples = load_set("polyu-1-40")
    other = next(name for name in FOLDS if name != train_fold)
    return samples[FOLDS[train_fold]], samples[FOLDS[other]]


def teacher_outputs(model: LoadedModel, samples: list, cache: Path) -> list[np.ndarray]:
    """The model's stored pipeline (mode and Wiener step) on each noisy image, on the CPU; kept in
    ``cache`` (a file per model and images), since the guided sampler takes minutes."""
    path = cache / f"teacher-{model.sha256[:12]}-{samples[0][0]}-{len(samples)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return [stored[str(index)] for index in range(len(samples))]
    runtime = resolve_runtime("cpu", "auto")
    outputs = [denoise_array(model, noisy, sampler=model.sampler, runtime=runtime, seed=0, image_index=index)
               for index, (_name, noisy, _clean) in enumerate(samples)]
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{str(index): output for index, output in enumerate(outputs)})
    return outputs


def fine_tune(model: LoadedModel, pairs: Pairs, config: DistillConfig, out: Path) -> Path:
    """The model with its student fine-tuned on ``pairs`` (distillation's own loop), saved under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    student_model, _started = _student_model(model, model.model.config.student, "teacher", pairs)
    steps, seconds = train_student(student_model, pairs, config, torch.device("cpu"), out / "log.jsonl")
    path = out / "model.safetensors"
    save_model(path, student_model.cpu(), sampler=model.sampler,
               info={**model.info, "target_ceiling": {"steps": steps, "seconds": round(seconds, 1)}})
    return path


def score(model: LoadedModel, samples: list) -> dict[str, float]:
    """Mean PSNR of the student alone and with the `fast` Wiener step."""
    alone, piped = [], []
    for index, (_name, noisy, clean) in enumerate(samples):
        estimate = pilot(model, "fast", noisy, index)
        alone.append(psnr_uint8(clean, to_uint8(estimate)))
        piped.append(psnr_uint8(clean, to_uint8(refine(model, noisy, estimate, "fast"))))
    return {"alone": float(np.mean(alone)), "wiener": float(np.mean(piped))}


def pipeline_score(samples: list, outputs: list[np.ndarray]) -> dict[str, float]:
    """Mean PSNR of a whole pipeline's outputs (Wiener step included): the "+ Wiener" column only."""
    pairs = zip(samples, outputs, strict=True)
    psnrs = [psnr_uint8(clean, to_uint8(output)) for (_name, _noisy, clean), output in pairs]
    return {"alone": float("nan"), "wiener": float(np.mean(psnrs))}


def colour_map(sources: list[np.ndarray], cleans: list[np.ndarray]) -> np.ndarray:
    """(4, 3) least-squares map of [r, g, b, 1] of ``sources`` (float [0, 1]) onto the uint8 ``cleans``."""
    x = np.concatenate([source.reshape(-1, 3) for source in sources]).astype(np.float64)
    y = np.concatenate([clean.reshape(-1, 3) for clean in cleans]).astype(np.float64) / 255.0
    return np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0]


def recoloured(image: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    flat = image.reshape(-1, 3).astype(np.float64) @ mapping[:3] + mapping[3]
    return np.clip(flat, 0.0, 1.0).reshape(image.shape).astype(np.float32)


def colour_row(model: LoadedModel, train: list, scored: list) -> dict[str, float]:
    """The student and its pipeline on ``scored``, each through a colour map fitted on ``train``."""
    def outputs(samples: list) -> tuple[list[np.ndarray], list[np.ndarray]]:
        alone = [pilot(model, "fast", noisy, index) for index, (_name, noisy, _clean) in enumerate(samples)]
        return alone, [refine(model, s[1], a, "fast") for s, a in zip(samples, alone, strict=True)]

    fitted, scoring = outputs(train), outputs(scored)
    row = {}
    for key, index in (("alone", 0), ("wiener", 1)):
        mapping = colour_map(fitted[index], [clean for _name, _noisy, clean in train])
        row[key] = float(np.mean([psnr_uint8(clean, to_uint8(recoloured(image, mapping)))
                                  for (_name, _noisy, clean), image in zip(scored, scoring[index], strict=True)]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--train-fold", choices=sorted(FOLDS), default="1-20")
    parser.add_argument("--arms", default="clean,teacher,colour")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/ceiling"), help="the teacher's outputs, kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    train, scored = folds(args.train_fold)
    config = replace(DistillConfig(), steps=args.steps, lr=args.lr)
    noisy16 = [_to_uint16(noisy) for _name, noisy, _clean in train]
    rows = {"student before": score(model, scored)}
    teacher_scored = teacher_outputs(model, scored, args.cache)
    rows["teacher pipeline (" + model.sampler.mode + ")"] = pipeline_score(scored, teacher_scored)
    for arm in args.arms.split(","):
        started = time.perf_counter()
        if arm == "colour":
            rows["student before, colour map fitted on the training fold"] = colour_row(model, train, scored)
            continue
        if (args.out / arm / "model.safetensors").is_file():
            path = args.out / arm / "model.safetensors"
            rows[f"fine-tuned on {arm} targets"] = score(load_model(path), scored)
            continue
        if arm == "clean":
            targets = [_to_uint16(clean.astype(np.float32) / 255.0) for _name, _noisy, clean in train]
        elif arm == "teacher":
            targets = [_to_uint16(output) for output in teacher_outputs(model, train, args.cache)]
        else:
            raise SystemExit(f"unknown arm {arm!r}: use clean, teacher or colour")
        path = fine_tune(model, Pairs(noisy16, targets), config, args.out / arm)
        rows[f"fine-tuned on {arm} targets"] = {**score(load_model(path), scored),
                                                "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps({arm: rows[f"fine-tuned on {arm} targets"]}), flush=True)
    result = {"model": args.model, "train_fold": args.train_fold, "steps": args.steps, "lr": args.lr,
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"trained on PolyU {args.train_fold}, scored on the other fold ({len(scored)} images), "
             f"{args.steps} steps, lr {args.lr}", "", "| student | alone | + Wiener |", "|---|---|---|"]
    lines += [f"| {name} | {row['alone']:.2f} | {row['wiener']:.2f} |".replace("nan", "") for name, row in rows.items()]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
