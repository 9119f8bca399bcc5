"""Training curves drawn with Pillow (no plotting library needed): loss and validation per step."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import BsgdError

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_log(run: Path) -> list[dict]:
    path = run / "log.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise BsgdError(f"{path}: no training log; give the folder a 'bsgd train' run wrote")
    rows = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BsgdError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from exc
    for line in text.splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a line cut by a killed run
            if isinstance(row, dict) and _is_number(row.get("step")):
                rows.append({k: v for k, v in row.items() if k == "step" or _is_number(v)})
    if not rows:
        raise BsgdError(f"{path}: the training log is empty")
    return rows


def _panel(draw, box, title, series, steps_max) -> None:
    left, top, right, bottom = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left + 4, top - 14), title, fill=(0, 0, 0))
    values = [v for _name, points in series for _s, v in points]
    if not values:
        return
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    draw.text((right + 4, top), f"{high:.4g}", fill=(0, 0, 0))
    draw.text((right + 4, bottom - 10), f"{low:.4g}", fill=(0, 0, 0))
    for index, (name, points) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        xy = [
            (left + (right - left) * step / max(1, steps_max), bottom - (bottom - top) * (value - low) / span)
            for step, value in points
        ]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        elif xy:
            draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=colour)
        draw.text((left + 6, top + 4 + 12 * index), name, fill=colour)


def plot_training_log(run: Path, output: Path | None = None) -> Path:
    """Write a PNG with the loss curves (top) and the validation signal (bottom); returns its path."""
    from PIL import Image, ImageDraw

    run = Path(run)
    rows = read_log(run)
    steps_max = max(int(r.get("step", 0)) for r in rows)
    losses = sorted({k for r in rows for k in r if k.startswith("loss_")})
    loss_series = [(k, [(r["step"], r[k]) for r in rows if k in r]) for k in losses]
    val_keys = [k for k in ("val_psnr", "val_loss") if any(k in r for r in rows)]
    val_series = [(k, [(r["step"], r[k]) for r in rows if k in r]) for k in val_keys]
    image = Image.new("RGB", (900, 560), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, (40, 30, 820, 260), "training losses", loss_series, steps_max)
    _panel(draw, (40, 310, 820, 520), "validation", val_series, steps_max)
    draw.text((40, 535), f"step (0 .. {steps_max})", fill=(0, 0, 0))
    target = Path(output) if output else (run if run.is_dir() else run.parent) / "curves.png"
    image.save(target)
    return target
