"""Before/after views: side-by-side crops at 100% so a result can be judged in one image."""

from __future__ import annotations

import numpy as np

_GAP = 8


def detail_crop_origin(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` x ``size`` window with the most local contrast (where noise and detail show)."""
    height, width = image.shape[:2]
    if height <= size and width <= size:
        return 0, 0
    grey = image.mean(axis=2)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    step = max(8, size // 4)
    best, origin = -1.0, (0, 0)
    for y in range(0, max(1, height - size + 1), step):
        for x in range(0, max(1, width - size + 1), step):
            score = float(energy[y : y + size, x : x + size].mean())
            if score > best:
                best, origin = score, (y, x)
    return origin


def before_after(noisy: np.ndarray, denoised: np.ndarray, size: int = 384) -> np.ndarray:
    """(h, 2w + gap, 3) float32: the same 100% crop of ``noisy`` (left) and ``denoised`` (right)."""
    y, x = detail_crop_origin(noisy, size)
    left = noisy[y : y + size, x : x + size]
    right = denoised[y : y + size, x : x + size]
    gap = np.ones((left.shape[0], _GAP, 3), dtype=np.float32)
    return np.concatenate([left, gap, right], axis=1).astype(np.float32)
