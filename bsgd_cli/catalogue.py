"""``bsgd models``: the embedded and user models with their config, data and measured numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import EMBEDDED_DIR, read_metadata, user_model_dir
from .config import ModelConfig, SamplerConfig, from_dict
from .errors import BsgdError, ModelFileError


def describe(path: Path) -> dict[str, Any]:
    """One row of ``bsgd models`` for a model file."""
    meta = read_metadata(path)
    sampler, info = meta["sampler"], meta["info"]
    try:
        config = from_dict(ModelConfig, meta["config"])  # what the file rebuilds, checked
    except BsgdError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    branches = ["blind-spot", "diffusion"]
    if config.student is not None:
        branches.append("student" if config.student.norm == "group" else f"student ({config.student.norm} norms)")
    sampler_text = (
        f"{sampler.get('mode', 'bsgd')} w={sampler.get('guidance')} K={sampler.get('steps')} "
        f"R={sampler.get('runs')} t0={sampler.get('t_start')}"
    )
    try:
        settings = from_dict(SamplerConfig, sampler)  # what the file gets, defaults filled in
    except BsgdError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    if settings.t_start_noise > 0:
        sampler_text += f" (later on strong noise: c={settings.t_start_noise:g})"
    if settings.refine == "wiener":
        wiener = settings.wiener
        own = ", ".join(f"{mode} {scale:g}" for mode, scale in wiener.mode_noise_scale.items())
        sampler_text += (
            f" + wiener n={wiener.noise_scale}{f' ({own})' if own else ''} chroma x{wiener.chroma_scale} "
            f"{wiener.patch}/{wiener.stride} colour {wiener.chroma_patch}/{wiener.chroma_stride}"
            f" (auto's factor {wiener.sure_factor:g})"
        )
    if settings.strength != 1.0:
        sampler_text += f" strength={settings.strength}"
    measured = info.get("measured", {})
    measured_text = ", ".join(f"{k} {v}" for k, v in measured.items()) if isinstance(measured, dict) else str(measured)
    return {
        "name": path.stem,
        "size": f"{path.stat().st_size / 1e6:.1f} MB",
        "branches": "+".join(branches),
        "data": info.get("training_data", info.get("noisy_dir", "?")),
        "sampler": sampler_text,
        "measured": measured_text or "-",
        "path": str(path),
    }


def list_models() -> list[dict[str, Any]]:
    """Embedded models first, then ``$BSGD_MODEL_DIR`` (or ~/.local/share/bsgd/models).

    A file that cannot be described (damaged, hostile, not a model, unreadable, a pipe) is listed as
    unreadable with the reason, and the listing goes on.
    """
    rows = []
    for folder in (EMBEDDED_DIR, user_model_dir()):
        try:
            paths = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        except OSError as exc:
            rows.append(_unreadable(folder, f"the folder cannot be listed ({exc.strerror or exc})"))
            continue
        for path in paths:
            try:
                rows.append(describe(path))
            except (BsgdError, OSError) as exc:
                rows.append(_unreadable(path, str(exc)))
    return rows


def _unreadable(path: Path, reason: str) -> dict[str, Any]:
    return {"name": path.stem, "size": "-", "branches": "-", "data": "-", "sampler": "-",
            "measured": f"unreadable: {reason}", "path": str(path)}
