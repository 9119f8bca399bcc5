#!/usr/bin/env python3
"""One short GPU slot in one command: ``make device-train`` (docs/GPU.md).

    PYTHONPATH=. python3 scripts/device_train.py --out "$OUT"              # on the GPU machine
    DRY_RUN=1 OUT=runs/dry make device-train                               # the same path on a CPU, ~1 minute

Stages, each against its own deadline (bsgd_cli.training.slot.gpu_plan): train (resuming training/gpu/state.pt
when it is there), save the compact state and the model to $OUT, distil the fast student, benchmark
on the report split in the data folder, time every mode on a 24 MP image. results.json is rewritten
after every stage and log.txt after every line, so a run cut off anywhere still says what happened.
A watchdog ends the command at the plan's hard deadline, inside the device tool's 10 minutes.

Needs only what the slot's Python has (torch, numpy, pillow, scipy, safetensors; no rawpy, no
install): run it from the repository root with PYTHONPATH=. .
"""

from __future__ import annotations

import time

START = time.monotonic()  # the slot's clock: before the heavy imports, which count against it

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Log:
    """Prints each line with the seconds since the start and appends it to log.txt (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        text = f"[{time.monotonic() - START:6.1f}s] {line}"
        with self.lock:
            print(text, flush=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null, paths and other objects strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


class Results:
    """results.json, rewritten atomically whenever a stage reports (thread-safe)."""

    def __init__(self, path: Path, base: dict[str, Any]) -> None:
        self.path = path
        self.data = base
        self.lock = threading.Lock()

    def stage(self, name: str, facts: dict[str, Any]) -> None:
        with self.lock:
            self.data.setdefault("stages", {})[name] = facts
        self.write()

    def write(self) -> None:
        with self.lock:
            self.data["elapsed_s"] = round(time.monotonic() - START, 1)
            text = json.dumps(_clean(self.data), indent=2, allow_nan=False) + "\n"
            temporary = self.path.with_name(f".{self.path.name}.partial")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                        help="Folder for what comes back (default: $OUT). Must be empty.")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("DEVICE_DATA", REPO / ".device-data")),
                        help="Data folder made by `make device-data`.")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("STATE_DIR", REPO / "training" / "gpu")),
                        help="Resume from STATE_DIR/state.pt when it exists (the last slot's unpacked state).")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a new temporary one).")
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get("DRY_RUN", "") not in ("", "0"),
                        help="Tiny networks, 3 steps per stage, on the CPU (default: $DRY_RUN).")
    parser.add_argument("--fresh", action="store_true", help="Start a new model even if a state exists.")
    parser.add_argument("--hard-seconds", type=float, default=None,
                        help="Stop the whole command here, every stage mark scaled to fit (for a shorter slot).")
    args = parser.parse_args()
    if args.out is None:
        parser.error("give --out or set OUT (the device tool sets it)")
    return args


def environment(plan_device: str) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available() and plan_device != "cpu"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "name": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.machine()})",
        "cuda": torch.version.cuda if cuda else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit or None,
    }


def run(args: argparse.Namespace, log: Log, results: Results) -> int:
    from bsgd_cli import __version__
    from bsgd_cli.checkpoint import resolve_model_path
    from bsgd_cli.training.optim import WallClock
    from bsgd_cli.training.slot import MODEL_NAME, SlotData, dry_run_plan, gpu_plan, out_problems, shortened
    from bsgd_cli.training.slot_stages import benchmark_stage, distill_stage, speed_stage, train_stage

    plan = dry_run_plan() if args.dry_run else gpu_plan()
    if args.hard_seconds is not None:
        plan = shortened(plan, args.hard_seconds)
    results.data.update(
        bsgd_version=__version__,
        dry_run=plan.dry_run,
        device=environment(plan.device),
        plan={
            "preset": plan.preset,
            "train_until_s": plan.train_until,
            "distill_until_s": plan.distill_until,
            "benchmark_until_s": plan.benchmark_until,
            "speed_until_s": plan.speed_until,
            "hard_s": plan.hard_seconds,
            "notes": plan.notes,
        },
    )
    watchdog = threading.Timer(max(0.0, plan.hard_seconds - (time.monotonic() - START)), _hard_stop, (log, results))
    watchdog.daemon = True
    watchdog.start()
    log(f"slot: {'DRY RUN on the CPU' if plan.dry_run else 'GPU'}; device {results.data['device']['name']}; "
        f"data {args.data}; out {args.out}")
    if not plan.dry_run and results.data["device"]["cuda"] is None:
        log(
            "slot: WARNING no CUDA GPU here: the GPU plan will run on the CPU for ten minutes; DRY_RUN=1 tests the path"
        )
    data = SlotData(args.data)
    data.check()
    work = args.work or Path(tempfile.mkdtemp(prefix="bsgd-slot-"))
    until = {name: WallClock(seconds=seconds, started=START) for name, seconds in
             (("train", plan.train_until), ("distill", plan.distill_until), ("benchmark", plan.benchmark_until),
              ("speed", plan.speed_until))}
    state_dir = None if args.fresh else args.state_dir

    model: Path | None = None
    try:
        results.stage("train", train_stage(plan, data, state_dir, work, args.out, until["train"], log))
        model = work / "teacher.safetensors"
        shutil.copyfile(model, args.out / MODEL_NAME)  # a model comes back even if what follows is cut off
        log(f"train: state and model saved to {args.out}")
    except Exception as exc:  # every stage fails soft: record, then go on with what exists
        _failed(results, "train", exc, log)
    if model is not None:
        try:
            facts, student_model = distill_stage(plan, data, model, work, until["distill"], log)
            model = student_model
            shutil.copyfile(model, args.out / MODEL_NAME)
            results.stage("distill", facts)
        except Exception as exc:
            _failed(results, "distill", exc, log)
        baseline = str(resolve_model_path(None))
        for name, stage in (
            (
                "benchmark",
                lambda: benchmark_stage(
                    plan,
                    data,
                    model,
                    baseline,
                    work,
                    until["benchmark"],
                    log,
                    lambda facts: results.stage("benchmark", facts),
                ),
            ),
            (
                "speed",
                lambda: speed_stage(plan, model, until["speed"], log, lambda facts: results.stage("speed", facts)),
            ),
        ):
            try:
                results.stage(name, stage())
            except Exception as exc:
                _failed(results, name, exc, log)
    watchdog.cancel()
    problems = out_problems(args.out)
    rawpy = sys.modules.get("rawpy") is not None
    statuses = {name: facts.get("status") for name, facts in results.data.get("stages", {}).items()}
    results.data.update(
        rawpy_imported=rawpy,
        out_problems=problems,
        status="done" if all(s == "done" for s in statuses.values()) and len(statuses) == 4 else "partial",
    )
    results.write()
    log(f"slot: {results.data['status']}; stages {statuses}; files {sorted(p.name for p in args.out.iterdir())}")
    for problem in problems:
        log(f"slot: $OUT problem: {problem}")
    if rawpy:
        log("slot: rawpy was imported; the GPU machine has none, so this path would fail there")
    return 0 if model is not None and not problems and not rawpy else 1


def _failed(results: Results, stage: str, exc: BaseException, log: Log) -> None:
    log(f"{stage}: FAILED: {type(exc).__name__}: {exc}")
    for line in traceback.format_exc().rstrip().splitlines()[-12:]:
        log(f"{stage}:   {line}")
    results.stage(stage, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})


def _hard_stop(log: Log, results: Results) -> None:
    log("slot: HARD DEADLINE reached; writing results.json and stopping (state and model were saved after training)")
    results.data["status"] = "hard deadline"
    results.write()
    os._exit(3)


def main() -> int:
    args = parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if any(args.out.iterdir()):
        print(f"{args.out} is not empty: give an empty folder for OUT (only 8 files come back)", file=sys.stderr)
        return 2
    log = Log(args.out / "log.txt")
    results = Results(args.out / "results.json", {
        "recipe": "make device-train", "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
    })
    try:
        return run(args, log, results)
    except Exception as exc:  # say what happened in the files that come back
        _failed(results, "slot", exc, log)
        results.data["status"] = "failed"
        results.write()
        return 1


if __name__ == "__main__":
    sys.exit(main())
