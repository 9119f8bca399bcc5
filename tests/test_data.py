"""Training patches: shapes, determinism, augmentation."""

from __future__ import annotations

import numpy as np

from bsgd_cli.training.data import NoisyImagePool, augment, photometric, sample_patches


def _pool() -> NoisyImagePool:
    rng = np.random.default_rng(0)
    images = [rng.random((50, 60, 3), dtype=np.float32) for _ in range(3)]
    pool = NoisyImagePool(paths=[], reader=lambda p: np.zeros((1, 1, 3), np.float32))
    for index, image in enumerate(images):
        pool.paths.append(f"img{index}")  # type: ignore[arg-type]
        pool._cache[index] = image
        pool._sizes[index] = image.shape[:2]
    return pool


def test_patches_are_deterministic_given_the_generator() -> None:
    pool = _pool()
    a = sample_patches(pool, np.random.default_rng(5), 4, 20, photometric_augment=True)
    b = sample_patches(pool, np.random.default_rng(5), 4, 20, photometric_augment=True)
    assert a.shape == (4, 3, 20, 20) and a.dtype == np.float32
    assert np.array_equal(a, b)


def test_augment_codes_are_the_eight_symmetries() -> None:
    patch = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)
    results = {augment(patch, code).tobytes() + bytes(augment(patch, code).shape) for code in range(8)}
    assert len(results) == 8


def test_photometric_only_darkens_and_permutes() -> None:
    rng = np.random.default_rng(1)
    patch = np.random.default_rng(2).random((8, 8, 3), dtype=np.float32)
    for _ in range(50):
        out = photometric(patch, rng)
        ratio = out.sum() / patch.sum()
        assert 0.15 - 1e-4 <= ratio <= 1 + 1e-4
        # every output channel is a scaled copy of some input channel
        for channel in range(3):
            assert any(np.allclose(out[..., channel], patch[..., c] * ratio, atol=1e-5) for c in range(3))
