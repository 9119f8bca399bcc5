"""Before/after views: side-by-side crops at 100% so a result can be judged in one image."""

from __future__ import annotations

import numpy as np

_GAP = 8


def detail_crop_origin(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` x ``size`` window (on a stride-size/2 grid) with the most detail (grey std)."""
    grey = np.asarray(image, dtype=np.float32).mean(axis=2)
    height, width = grey.shape
    stride = max(size // 2, 1)
    candidates = [(y, x) for y in range(0, max(height - size, 0) + 1, stride)
                  for x in range(0, max(width - size, 0) + 1, stride)]
    return max(candidates, key=lambda yx: float(grey[yx[0] : yx[0] + size, yx[1] : yx[1] + size].std()))


def before_after(noisy: np.ndarray, denoised: np.ndarray, size: int = 384) -> np.ndarray:
    """(h, 2w + gap, 3) float32: the same 100% crop of ``noisy`` (left) and ``denoised`` (right)."""
    y, x = detail_crop_origin(noisy, size)
    left = noisy[y : y + size, x : x + size]
    right = denoised[y : y + size, x : x + size]
    gap = np.ones((left.shape[0], _GAP, 3), dtype=np.float32)
    return np.concatenate([left, gap, right], axis=1).astype(np.float32)
