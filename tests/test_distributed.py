"""Multi-process training and batch denoising: 2 CPU processes on gloo, launched by torchrun.

The launches are real ``python -m torch.distributed.run --nproc-per-node 2`` runs (MASTER_ADDR
127.0.0.1, a free port), so the environment-variable path of ``distributed_context`` is what runs.
For training, torchrun starts *this file* as the worker script: the ``__main__`` block at the end
records which rank writes which file, then runs the ordinary ``bsgd`` command line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow  # subprocesses under torchrun (DDP)

REPO = Path(__file__).resolve().parents[1]
STEPS = 6  # the 2-process run
RESUMED_STEPS = 8  # the 1-process resume continues it to here
# warmup (100) > RESUMED_STEPS, so lr(step) = LR * (step + 1) / 100 does not depend on the total
# number of steps and the 6-step run is a true prefix of the 8-step reference.
LR = 0.05
TRAIN_ARGS = ["--preset", "tiny", "--batch", "4", "--patch", "40", "--lr", str(LR), "--precision", "fp32",
              "--log-every", "1", "--val-every", "3", "--checkpoint-every", "3", "--seed", "0", "--no-distill"]
WORLD = 2
LOSS_RTOL = 1e-4  # see test_two_ranks_match_one_rank_and_resume_on_one
WEIGHT_ATOL = 6e-3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(target: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --nproc-per-node 2 TARGET`` on the loopback interface."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.update(env_extra or {})
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(WORLD),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *target]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, cwd=REPO)


def _write_noisy_pngs(folder: Path, count: int, height: int, width: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        rng = np.random.default_rng(index)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        clean = np.stack([0.5 + 0.3 * np.sin(xx / 7.0 + index), 0.5 + 0.3 * np.cos(yy / 5.0), 0.5 + 0.0 * xx], axis=-1)
        noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
        path = folder / f"img{index:02d}.png"
        Image.fromarray((noisy * 255 + 0.5).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def noisy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 12 images: val_fraction 0.05 holds one out, so validation (rank 0 only) runs too.
    folder = tmp_path_factory.mktemp("captures")
    _write_noisy_pngs(folder, 12, 48, 48)
    return folder


def test_two_ranks_match_one_rank_and_resume_on_one(noisy_dir: Path, tmp_path: Path) -> None:
    """2 ranks x batch 2 against 1 rank x batch 4, then a 1-rank resume of the 2-rank state.

    Every rank draws the patches, t and noise of the whole global batch from the same generators
    and keeps its half, so the union of the two per-rank batches *is* the 1-rank batch and DDP's
    gradient average is the 1-rank gradient up to float summation order. So we assert near-equality:
    per-step losses (and val_loss) within LOSS_RTOL = 1e-4 relative, final EMA weights within
    WEIGHT_ATOL = 6e-3 absolute. Measured on this data: the worst loss difference is ~2e-7 and the
    worst weight difference ~2e-4 on an AVX512 CPU, 2.4e-3 on an AVX2 one (a bias of the diffusion
    U-Net's last level: rounding in another summation order, amplified by Adam on near-zero gradients).
    Seeding the two ranks independently instead (each its own (seed, rank) stream) gives per-step loss
    differences of 3e-3 to 1e-1 and weight differences of 2e-2, so the bounds sit 2.5x or more from
    either side: a wrong slice, a missing average or a different sample fails them.
    """
    from bsgd_cli.checkpoint import load_model
    from bsgd_cli.config import PRESETS, TrainConfig
    from bsgd_cli.engine.model import BsgdModel
    from bsgd_cli.training.train import train

    torch.set_num_threads(1)  # the workers get one thread each; two here would fight them for 2 cores
    reference = tmp_path / "one_rank"
    config = TrainConfig(steps=RESUMED_STEPS, batch=4, patch=40, lr=LR, precision="fp32", log_every=1,
                         val_every=3, checkpoint_every=3, seed=0)
    started = time.perf_counter()
    train(noisy_dir, reference, model_config=PRESETS["tiny"], config=config, device="cpu")
    one_rank_seconds = time.perf_counter() - started

    run = tmp_path / "two_ranks"
    record = tmp_path / "writes"
    record.mkdir()
    result = _torchrun([str(Path(__file__).resolve()), "train", "--noisy-dir", str(noisy_dir), "-o", str(run),
                        "--steps", str(STEPS), "--device", "cpu", "-q", *TRAIN_ARGS],
                       {"BSGD_TEST_RECORD": str(record)})
    assert result.returncode == 0, result.stderr[-4000:]

    # Only rank 0 wrote anything (every write ends in os.replace or an append to log.jsonl).
    assert not (record / "rank1.txt").exists(), (record / "rank1.txt").read_text()
    written = set((record / "rank0.txt").read_text().split())
    assert {"state.pt", "last.safetensors", "model.safetensors", "best.safetensors", "log.jsonl"} <= written
    assert load_model(run / "model.safetensors").info["world_size"] == WORLD

    # The 2-rank curve is the 1-rank curve: one log line per step, written once.
    ref_log, dist_log = _log(reference), _log(run)
    assert [e["step"] for e in dist_log] == list(range(1, STEPS + 1))
    worst = 0.0
    for ref, got in zip(ref_log, dist_log, strict=False):
        for key in ("loss_bsn", "loss_diffusion", "val_loss"):
            assert (key in ref) == (key in got), (key, ref, got)
            if key in ref:
                worst = max(worst, abs(got[key] - ref[key]) / abs(ref[key]))
                assert got[key] == pytest.approx(ref[key], rel=LOSS_RTOL), (ref["step"], key)
    assert [e["step"] for e in dist_log if "val_loss" in e] == [3, 6]

    # Resume the 2-rank state in one process: the same stream continues (steps 7, 8 as the reference).
    summary = train(noisy_dir, run, model_config=PRESETS["tiny"], config=config, device="cpu", resume=True)
    assert summary.steps == RESUMED_STEPS
    resumed = _log(run)
    assert [e["step"] for e in resumed] == list(range(1, RESUMED_STEPS + 1))
    for ref, got in zip(ref_log[STEPS:], resumed[STEPS:], strict=True):
        for key in ("loss_bsn", "loss_diffusion"):
            worst = max(worst, abs(got[key] - ref[key]) / abs(ref[key]))
            assert got[key] == pytest.approx(ref[key], rel=LOSS_RTOL), (ref["step"], key)
    a = load_model(reference / "model.safetensors").model.state_dict()
    b = load_model(run / "model.safetensors").model.state_dict()
    for name in a:
        assert torch.isfinite(b[name]).all(), name
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=WEIGHT_ATOL, msg=name)
    # Training moved the weights far more than the tolerance (the comparison is not vacuous).
    torch.manual_seed(0)
    fresh = BsgdModel(PRESETS["tiny"]).state_dict()
    assert max(float((a[n] - fresh[n]).abs().max()) for n in a) > 1e-2
    weights = max(float((a[n] - b[n]).abs().max()) for n in a)
    print(f"\n1 rank, {RESUMED_STEPS} steps in-process: {one_rank_seconds:.1f} s; worst loss rel. diff {worst:.2e}, "
          f"worst weight diff {weights:.2e}")


def test_batch_not_divisible_by_ranks(noisy_dir: Path, tmp_path: Path) -> None:
    result = _torchrun(["-m", "bsgd_cli", "train", "--noisy-dir", str(noisy_dir), "-o", str(tmp_path / "run"),
                        "--preset", "tiny", "--batch", "3", "--patch", "40", "--steps", "1", "--device", "cpu", "-q"])
    assert result.returncode != 0
    assert "must be divisible by the 2 processes" in result.stderr
    assert not (tmp_path / "run").exists()


def test_denoise_two_ranks_each_file_once(tmp_path: Path) -> None:
    """6 images + 1 broken file (index 1, so rank 1's): every file once, rank 0 alone prints all 7."""
    from bsgd_cli.checkpoint import save_model
    from bsgd_cli.config import PRESETS
    from bsgd_cli.engine.model import BsgdModel

    torch.manual_seed(0)
    model_path = tmp_path / "tiny.safetensors"
    save_model(model_path, BsgdModel(PRESETS["tiny"]))
    inputs = tmp_path / "in"
    good = _write_noisy_pngs(inputs, 6, 32, 40)
    # Sorted order: img00, img00_broken, img01, ...: the broken file is job 1 -> rank 1.
    (inputs / "img00_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    result = _torchrun(["-m", "bsgd_cli", "denoise", str(inputs), "-o", str(out), "--model", str(model_path),
                        "--mode", "bsn", "--device", "cpu", "--tile", "32", "--overlap", "8", "--json", "-q"])
    # A failure on rank 1 makes rank 0 exit 1, so torchrun fails too.
    assert result.returncode != 0, result.stderr[-4000:]
    report = json.loads(result.stdout)  # exactly one JSON document: rank 1 printed nothing
    summary, files = report["summary"], report["files"]
    assert summary["files"] == 7 and summary["done"] == 6 and summary["failed"] == 1
    inputs_seen = [Path(f["input"]).name for f in files]
    assert inputs_seen == sorted(p.name for p in inputs.iterdir())  # each once, in input order
    assert [f["status"] for f in files].count("failed") == 1
    assert files[1]["status"] == "failed" and "broken" in files[1]["input"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in good)


if __name__ == "__main__":
    # Worker under torchrun (see the module docstring): note every file this rank writes, run bsgd.
    import pathlib

    _record = Path(os.environ["BSGD_TEST_RECORD"]) / f"rank{os.environ.get('RANK', '0')}.txt"
    _replace, _open = os.replace, pathlib.Path.open

    def _note(name: str) -> None:
        with _open(_record, "a") as handle:
            handle.write(name + "\n")

    def _recording_replace(source, target, *args, **kwargs):
        _note(Path(target).name)
        return _replace(source, target, *args, **kwargs)

    def _recording_open(self, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            _note(self.name)
        return _open(self, mode, *args, **kwargs)

    os.replace = _recording_replace
    pathlib.Path.open = _recording_open  # type: ignore[method-assign]
    from bsgd_cli.cli import main

    sys.argv = ["bsgd", *sys.argv[1:]]
    main()
