"""Human-readable benchmark reports: Markdown (+ PNG bar charts), HTML (+ inline SVG), before/after strips.

Everything is drawn with Pillow or written as text; no plotting library. Inputs are the already-formatted
table rows of :func:`bsgd_cli.benchmark.runner.format_results_table` and the per-method means.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bsgd_cli.benchmark.metrics import PSNR_CONVENTION
from bsgd_cli.errors import ImageWriteError

BAR_COLOUR = (66, 110, 180)
LABEL_WIDTH, VALUE_WIDTH, ROW_HEIGHT, CHART_WIDTH = 170, 110, 26, 720
Bars = list[tuple[str, float]]


def save_crop_strip(path: Path, tiles: Mapping[str, np.ndarray], gap: int = 4, label_height: int = 16) -> Path:
    """Save uint8 hxwx3 ``tiles`` side by side (in the given order) with their labels above; returns ``path``."""
    from PIL import Image, ImageDraw

    arrays = list(tiles.values())
    height, width = arrays[0].shape[:2]
    strip = Image.new("RGB", (len(arrays) * (width + gap) - gap, height + label_height), "white")
    draw = ImageDraw.Draw(strip)
    for position, (label, tile) in enumerate(tiles.items()):
        left = position * (width + gap)
        strip.paste(Image.fromarray(np.ascontiguousarray(tile)), (left, label_height))
        draw.text((left + 2, 2), label[: max(width // 6, 4)], fill="black")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        strip.save(path)
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write the crop strip ({error}); check the output folder") from error
    return path


def _chart_data(results: Sequence[Mapping[str, Any]]) -> tuple[Bars, Bars]:
    psnr = [(r["method"], r["psnr"]) for r in results if r["psnr"] is not None and math.isfinite(r["psnr"])]
    speed = [(r["method"], r["seconds_per_mp"]) for r in results
             if r["method"] != "noisy" and r["seconds_per_mp"] is not None]
    return psnr, speed


def _psnr_floor(bars: Bars) -> float:
    """Bars start a little below the lowest PSNR, so that fractions of a dB stay visible."""
    return max(0.0, math.floor(min(v for _, v in bars)) - 1.0) if bars else 0.0


def _bar_lengths(bars: Bars, floor: float) -> list[float]:
    span = max(max(v for _, v in bars) - floor, 1e-9)
    return [max(v - floor, 0.0) / span * (CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH) for _, v in bars]


def _bar_png(path: Path, title: str, bars: Bars, unit: str, decimals: int, floor: float = 0.0) -> Path:
    from PIL import Image, ImageDraw

    top = 30
    image = Image.new("RGB", (CHART_WIDTH, top + ROW_HEIGHT * max(len(bars), 1) + 8), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black")
    if not bars:
        draw.text((10, top + 6), "no data", fill="black")
    for row, ((label, value), length) in enumerate(zip(bars, _bar_lengths(bars, floor) if bars else [],
                                                       strict=True)):
        y = top + row * ROW_HEIGHT
        draw.text((10, y + 7), label[:26], fill="black")
        draw.rectangle([LABEL_WIDTH, y + 4, LABEL_WIDTH + max(length, 1.0), y + ROW_HEIGHT - 4], fill=BAR_COLOUR)
        draw.text((LABEL_WIDTH + length + 6, y + 7), f"{value:.{decimals}f} {unit}", fill="black")
    image.save(path)
    return path


def _bar_svg(title: str, bars: Bars, unit: str, decimals: int, floor: float = 0.0) -> str:
    top = 30
    height = top + ROW_HEIGHT * max(len(bars), 1) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="18" font-weight="bold">{html.escape(title)}</text>']
    if not bars:
        parts.append(f'<text x="10" y="{top + 16}">no data</text>')
    for row, ((label, value), length) in enumerate(zip(bars, _bar_lengths(bars, floor) if bars else [],
                                                       strict=True)):
        y = top + row * ROW_HEIGHT
        parts += [f'<text x="10" y="{y + 17}">{html.escape(label)}</text>',
                  f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{max(length, 1.0):.1f}" '
                  f'height="{ROW_HEIGHT - 8}" fill="rgb{BAR_COLOUR}"/>',
                  f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 17}">{value:.{decimals}f} {unit}</text>']
    parts.append("</svg>")
    return "\n".join(parts)


def _markdown_table(table: Sequence[Sequence[str]]) -> list[str]:
    header, *rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _html_table(table: Sequence[Sequence[str]]) -> str:
    header, *rows = table
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _conventions(environment: Mapping[str, Any]) -> list[str]:
    ssim = environment.get("ssim_conventions", {})
    lines = [f"PSNR: {environment.get('psnr_convention', PSNR_CONVENTION)}."]
    lines += [f"{key}: {text}." for key, text in ssim.items()]
    facts = {k: environment[k] for k in ("seed", "model_hash", "device", "threads", "cpus_usable") if k in environment}
    if facts:
        lines.append("Environment: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + " (see results.json).")
    return lines


def write_reports(out_dir: Path, table: Sequence[Sequence[str]], results: Sequence[Mapping[str, Any]],
                  crop_files: Sequence[Path], *, title: str, notes: Sequence[str],
                  environment: Mapping[str, Any]) -> list[Path]:
    """Write ``report.md``, ``psnr.png``, ``speed.png`` and ``report.html`` in ``out_dir``; returns their paths."""
    psnr, speed = _chart_data(results)
    floor = _psnr_floor(psnr)
    psnr_title = f"PSNR (dB), axis from {floor:g} dB" if psnr else "PSNR (dB): no reference images"
    speed_title = "Seconds per megapixel (lower is faster)"
    written = [_bar_png(out_dir / "psnr.png", psnr_title, psnr, "dB", 2, floor),
               _bar_png(out_dir / "speed.png", speed_title, speed, "s/MP", 3)]
    relative = [p.relative_to(out_dir).as_posix() for p in crop_files]
    markdown = [f"# bsgd benchmark: {title}", "", *_markdown_table(table), "", *_conventions(environment), "",
                "![PSNR](psnr.png)", "", "![Speed](speed.png)", ""]
    if relative:
        markdown += ["## Crops (128x128 at 100%: noisy | methods | clean)", ""]
        markdown += [f"![{Path(r).stem}]({r})" for r in relative] + [""]
    markdown += [f"- {note}" for note in notes]
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{image-rendering:pixelated}</style>",
            f"</head><body><h1>bsgd benchmark: {html.escape(title)}</h1>", _html_table(table),
            *(f"<p>{html.escape(line)}</p>" for line in _conventions(environment)),
            _bar_svg(psnr_title, psnr, "dB", 2, floor), "<br>", _bar_svg(speed_title, speed, "s/MP", 3)]
    if relative:
        page.append("<h2>Crops (128x128 at 100%: noisy | methods | clean)</h2>")
        page += [f"<figure><img src='{html.escape(r)}' alt='{html.escape(Path(r).stem)}'>"
                 f"<figcaption>{html.escape(Path(r).stem)}</figcaption></figure>" for r in relative]
    page += [f"<p>{html.escape(note)}</p>" for note in notes] + ["</body></html>"]
    for name, text in (("report.md", "\n".join(markdown) + "\n"), ("report.html", "\n".join(page) + "\n")):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written
