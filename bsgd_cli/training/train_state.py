"""Training-state files: the full ``state.pt`` that ``--resume`` reads, and a compact form for small budgets.

A state is a dict of tensors, numbers and JSON strings (configs, generator states), written with
``torch.save`` and read back with ``weights_only=True``, so loading one runs no code.

The *compact* form (:func:`compact_state`) is what a short GPU slot sends back under a per-file size
limit: the EMA weights and the AdamW moments in bfloat16, and no separate raw weights. Resuming it
continues from the EMA weights (see :meth:`bsgd_cli.training.train.Trainer.apply_state`); the moments go
back to float32 on loading. About 6 bytes per trained parameter instead of 16.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError
from ..io.imagedata import special_kind

STATE_FILE = "state.pt"
COMPACT_KEY = "compact"


def state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it, then rename it into place."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


STATE_KEYS = ("model_config", "train_config", "ema", "step", "seconds", "best_value", "best_step")


def read_state(path: Path) -> dict[str, Any]:
    """A training state saved by :class:`bsgd_cli.training.train.Trainer`, full or compact (``weights_only=True``:
    no code runs).

    Anything else (random bytes, a pickle, another program's checkpoint, a pipe) is refused in one
    line that says what to do; torch's own multi-line explanation is left out.
    """
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise TrainingError(f"{path}: no training state to resume from; start without --resume") from None
    if not stat.S_ISREG(mode):
        raise TrainingError(f"{path}: {special_kind(mode) or 'a folder'}, not a training state; start without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure here means a damaged or foreign file
        raise TrainingError(
            f"{path}: not a bsgd training state, or damaged (torch cannot load it: {type(exc).__name__}); "
            "start a fresh run without --resume, or in another -o folder"
        ) from exc
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise TrainingError(
            f"{path}: not a bsgd training state (no {', '.join(missing[:3])}); start a fresh run without --resume"
        )
    return state


def _to_bf16(value: Any) -> Any:
    """Floating tensors with more than one element become bfloat16; scalars (Adam's step) stay."""
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 1:
        return value.detach().to("cpu", torch.bfloat16).contiguous()
    if isinstance(value, dict):
        return {key: _to_bf16(item) for key, item in value.items()}
    return value


def compact_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state without the raw weights, EMA and optimizer moments in bfloat16 (see the module docstring)."""
    compact = {key: value for key, value in state.items() if key != "model"}
    compact["ema"] = _to_bf16(state["ema"])
    optimizer = dict(state["optimizer"])
    optimizer["state"] = {index: _to_bf16(moments) for index, moments in optimizer["state"].items()}
    compact["optimizer"] = optimizer
    compact[COMPACT_KEY] = True
    return compact
