#!/usr/bin/env python3
"""Unpack what a GPU slot returned ($OUT of `make device-train`) into training/gpu/, and on request
install its model into the package when it measured better on the report split (docs/GPU.md).

    .venv/bin/python scripts/device_unpack.py /work/.device/...              # state + logs into training/gpu/
    .venv/bin/python scripts/device_unpack.py /work/.device/... --install    # and the model, if it is better

training/gpu/ then holds the compact state the next slot resumes (state.pt), that slot's results.json,
log.txt and train_log.jsonl, and slots.jsonl with one summary line per slot (docs/GPU.md's table).
The model file goes to runs/gpu-slots/ (ignored: 7 MB a slot would soon fill the repository's
budget) unless --install puts it into the package. A dry run's files are refused unless
--allow-dry-run (its tiny model must never become the state a real slot resumes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bsgd_cli.checkpoint import load_model  # noqa: E402
from bsgd_cli.errors import BsgdError  # noqa: E402
from bsgd_cli.training.slot import (  # noqa: E402
    LOG_NAME,
    MODEL_NAME,
    RESULTS_NAME,
    STATE_NAME,
    TRAIN_LOG_NAME,
    measured_better,
    summary_row,
)
from bsgd_cli.training.train_state import COMPACT_KEY, read_state  # noqa: E402

TABLE_COLUMNS = ("started_utc", "device", "steps", "steps_this_slot", "train_minutes", "patches_per_s", "polyu_fast",
                 "polyu_bsgd", "polyu_bsgd_alone", "baseline_fast", "baseline_bsgd", "fast_mp_per_s_24mp", "status")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="The folder the slot's files came back in.")
    parser.add_argument("--state-dir", type=Path, default=REPO / "training" / "gpu")
    parser.add_argument("--models-dir", type=Path, default=REPO / "runs" / "gpu-slots",
                        help="Where the returned model file is kept (ignored by git).")
    parser.add_argument(
        "--install", action="store_true", help="Install the model into the package if it measured better."
    )
    parser.add_argument("--package-model", type=Path, default=REPO / "bsgd_cli" / "models" / "default.safetensors")
    parser.add_argument("--force", action="store_true", help="Install even if it did not measure better.")
    parser.add_argument("--allow-dry-run", action="store_true", help="Accept a dry run's files (for tests).")
    return parser.parse_args()


def check_returned(out: Path) -> dict:
    """The slot's results; raises with what is missing or damaged."""
    missing = [name for name in (RESULTS_NAME, STATE_NAME, MODEL_NAME) if not (out / name).is_file()]
    if missing:
        raise BsgdError(f"{out}: {', '.join(missing)} missing; the slot did not get that far (see its log.txt)")
    results = json.loads((out / RESULTS_NAME).read_text(encoding="utf-8"))
    state = read_state(out / STATE_NAME)
    if not state.get(COMPACT_KEY):
        raise BsgdError(f"{out / STATE_NAME}: not a compact slot state")
    load_model(out / MODEL_NAME)  # raises if damaged
    return results


def main() -> int:
    args = parse_args()
    try:
        results = check_returned(args.out)
    except (BsgdError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if results.get("dry_run") and not args.allow_dry_run:
        print("error: these are a dry run's files (a tiny CPU model); pass --allow-dry-run to unpack them anyway",
              file=sys.stderr)
        return 2
    row = summary_row(results)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    for name in (STATE_NAME, RESULTS_NAME, LOG_NAME, TRAIN_LOG_NAME):
        if (args.out / name).is_file():
            shutil.copyfile(args.out / name, args.state_dir / name)
    with (args.state_dir / "slots.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    stamp = str(row["started_utc"] or "unknown").replace(":", "").replace("+0000", "Z")
    kept = args.models_dir / stamp / MODEL_NAME
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / MODEL_NAME, kept)
    print(f"state and logs -> {args.state_dir}; model -> {kept}")
    print("docs/GPU.md row:\n| " + " | ".join("-" if row[c] is None else str(row[c]) for c in TABLE_COLUMNS) + " |")
    if not args.install:
        return 0
    better, why = measured_better(results)
    if not better and not args.force:
        print(f"not installed: it did not measure better on the PolyU report split ({why}); --force installs anyway")
        return 1
    temporary = args.package_model.with_name(f".{args.package_model.name}.partial")
    shutil.copyfile(args.out / MODEL_NAME, temporary)
    temporary.replace(args.package_model)
    print(f"installed into {args.package_model} ({why}); update docs/MODEL_CARD.md, docs/BENCHMARKS.md and README.md "
          "with numbers measured by their committed commands")
    return 0


if __name__ == "__main__":
    sys.exit(main())
