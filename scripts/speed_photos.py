"""Real-noise test photos for the whole-command speed benchmark (scripts/speed_as_used.sh).

Lays the 512x512 noisy DND crops of ``../shared/data/train/dnd`` (real camera noise; research terms,
never committed) side by side into photos of a given size, every second crop mirrored so the seams
stay continuous, and writes them as JPEG (quality 95, as a camera would):

    .venv/bin/python scripts/speed_photos.py --out runs/speed/photos --count 4 --megapixels 2
    .venv/bin/python scripts/speed_photos.py --out runs/speed/big --count 1 --megapixels 50

Photo k starts at crop 12 k (wrapping around the folder), so four 2 MP photos show different scenes.
The output folder is under an ignored path: the photos are made at run time, never kept.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

CROP = 512
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train" / "dnd"


def mosaic(crops: list[Path], first: int, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: crops from ``first`` on, row by row, every other one mirrored."""
    rows, cols = math.ceil(height / CROP), math.ceil(width / CROP)
    canvas = np.empty((rows * CROP, cols * CROP, 3), dtype=np.uint8)
    for index in range(rows * cols):
        row, col = divmod(index, cols)
        crop = np.asarray(Image.open(crops[(first + index) % len(crops)]).convert("RGB"))[:CROP, :CROP]
        if col % 2:
            crop = crop[:, ::-1]
        if row % 2:
            crop = crop[::-1]
        canvas[row * CROP : (row + 1) * CROP, col * CROP : (col + 1) * CROP] = crop
    return canvas[:height, :width]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--megapixels", type=float, default=2.0)
    parser.add_argument("--source", type=Path, default=SHARED, help="folder of 512x512 noisy crops")
    args = parser.parse_args()
    crops = sorted(args.source.glob("*.png"))
    if not crops:
        raise SystemExit(f"no crops in {args.source}: the shared data is needed")
    width = int(round(math.sqrt(args.megapixels * 1e6 * 1.5)))  # 3:2, as most cameras
    height = int(round(width / 1.5))
    args.out.mkdir(parents=True, exist_ok=True)
    for k in range(args.count):
        pixels = mosaic(crops, 12 * k, height, width)
        Image.fromarray(pixels).save(args.out / f"photo_{k:02d}.jpg", quality=95)


if __name__ == "__main__":
    main()
