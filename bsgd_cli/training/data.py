"""Training data: noisy images from folders of any size, cached in memory, random augmented patches.

Randomness is explicit: every draw goes through the ``numpy.random.Generator`` passed in, so a run
resumed with the generator's saved state continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BsgdError, TrainingError
from ..io import find_images, read_image
from ..raw.bayer import augment_bayer
from ..raw.domain import read_training_planes

Reader = Callable[[Path], np.ndarray]


@dataclass(frozen=True)
class Augmentation:
    """How a patch is flipped: ``apply(patch, code, size)`` gets a patch cut ``margin`` pixels larger than
    ``size`` (at its bottom and right) and a code 0..7, and returns (size, size, C).

    :data:`FLIPS` for sRGB images; packed Bayer planes use :func:`bsgd_cli.raw.bayer.augment_bayer`
    (margin 1), passed in by :func:`raw_pool`, so the patch code does not depend on the RAW code.
    """

    apply: Callable[[np.ndarray, int, int], np.ndarray]
    margin: int = 0


def read_rgb(path: Path) -> np.ndarray:
    """Read one image (sRGB or RAW) as float32 H x W x 3 in [0, 1]."""
    return read_image(path).pixels


@dataclass
class NoisyImagePool:
    """Noisy training images, decoded once while they fit in ``cache_megabytes``, else re-read."""

    paths: list[Path]
    reader: Reader = read_rgb
    cache_megabytes: int = 2048
    skipped: list[str] = field(default_factory=list)
    augmentation: Augmentation | None = None  # None: FLIPS (the 8 flips and rotations)
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _sizes: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_folder(
        cls, folder: Path, *, min_side: int, reader: Reader = read_rgb, cache_megabytes: int = 2048,
        augmentation: Augmentation | None = None,
    ) -> NoisyImagePool:
        """Every readable image under ``folder`` (recursive) with both sides >= ``min_side``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise TrainingError(f"{folder}: not a folder; give --noisy-dir a folder of noisy photos")
        found, warnings = find_images([folder], recursive=True)
        pool = cls(paths=[], reader=reader, cache_megabytes=cache_megabytes, skipped=list(warnings),
                   augmentation=augmentation)
        used = 0.0
        for path, _relative in found:
            try:
                image = reader(path)
            except BsgdError as exc:
                pool.skipped.append(str(exc))
                continue
            if min(image.shape[:2]) < min_side:
                pool.skipped.append(
                    f"{path}: {image.shape[1]}x{image.shape[0]} is smaller than the {min_side}-pixel patch"
                )
                continue
            index = len(pool.paths)
            pool.paths.append(path)
            pool._sizes[index] = image.shape[:2]
            megabytes = image.nbytes / 2**20
            if used + megabytes <= cache_megabytes:
                pool._cache[index] = image
                used += megabytes
        if not pool.paths:
            raise TrainingError(
                f"{folder}: no usable training image (need sRGB or RAW photos at least {min_side} pixels on a side)"
            )
        return pool

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        return cached if cached is not None else self.reader(self.paths[index])

    def split(self, fraction: float, rng: np.random.Generator) -> tuple[NoisyImagePool, NoisyImagePool | None]:
        """(train, held-out) pools; held-out gets round(fraction * n) images, none when that is 0."""
        count = int(round(fraction * len(self)))
        if count == 0 or count >= len(self):
            return self, None
        order = rng.permutation(len(self))
        held, kept = sorted(order[:count].tolist()), sorted(order[count:].tolist())
        return self._subset(kept), self._subset(held)

    def _subset(self, indices: list[int]) -> NoisyImagePool:
        pool = NoisyImagePool(
            paths=[self.paths[i] for i in indices], reader=self.reader, cache_megabytes=self.cache_megabytes,
            augmentation=self.augmentation,
        )
        for new, old in enumerate(indices):
            pool._sizes[new] = self._sizes[old]
            if old in self._cache:
                pool._cache[new] = self._cache[old]
        return pool


def augment(patch: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations (code 0..7) of an H x W x C patch."""
    if code & 4:
        patch = patch[:, ::-1]
    return np.rot90(patch, code & 3)


FLIPS = Augmentation(lambda patch, code, size: augment(patch, code))
"""The 8 flips and rotations of :func:`augment` (sRGB images)."""


def photometric_draw(rng: np.random.Generator, channels: int) -> tuple[float, np.ndarray | None]:
    """The random (gain, channel order) of :func:`photometric`: gain x0.15 .. x1 half the time (else 1),
    a channel permutation half the time for 3-channel images (else None)."""
    gain = float(np.exp(rng.uniform(np.log(0.15), 0.0))) if rng.random() < 0.5 else 1.0
    order = rng.permutation(3) if channels == 3 and rng.random() < 0.5 else None
    return gain, order


def photometric_apply(patch: np.ndarray, gain: float, order: np.ndarray | None) -> np.ndarray:
    """Apply a :func:`photometric_draw` to an H x W x C patch."""
    if gain != 1.0:
        patch = patch * np.float32(gain)
    if order is not None:
        patch = patch[:, :, order]
    return patch


def photometric(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random darkening (x0.15 .. x1, half the time) and RGB channel order (half the time).

    Both keep a noisy image a valid noisy image (zero-mean noise, independent of its neighbours),
    so the blind-spot objective still holds, and they teach dark scenes and other colour casts
    than the training set's (a model trained on bright, warm DND crops otherwise tints dark photos).
    """
    return photometric_apply(patch, *photometric_draw(rng, patch.shape[2]))


def sample_patches(
    pool: NoisyImagePool, rng: np.random.Generator, batch: int, size: int, *, photometric_augment: bool = False
) -> np.ndarray:
    """(batch, C, size, size) float32 random augmented patches (flips and rotations; see :func:`photometric`).

    C is the images' channel count (3 for sRGB, 4 for packed Bayer planes); the pool's
    :class:`Augmentation` flips them.
    """
    augmentation = pool.augmentation or FLIPS
    margin = augmentation.margin
    patches = []
    for _item in range(batch):
        index = int(rng.integers(len(pool)))
        height, width = pool._sizes[index]
        y = int(rng.integers(height - size - margin + 1))
        x = int(rng.integers(width - size - margin + 1))
        code = int(rng.integers(8))
        patch = augmentation.apply(pool.image(index)[y : y + size + margin, x : x + size + margin], code, size)
        if photometric_augment:
            patch = photometric(patch, rng)
        patches.append(np.ascontiguousarray(patch).transpose(2, 0, 1))
    return np.stack(patches).astype(np.float32, copy=False)


class PatchPrefetcher:
    """Batches of :func:`sample_patches` drawn ahead by one background thread.

    The thread draws from ``rng`` in the order a plain loop would, so the batches are the same
    ones; each comes with the generator's state right after its draw, which is what a checkpoint
    taken after consuming that batch must save (the generator itself is already further on).
    NumPy releases the GIL in its copies, so the cutting overlaps the GPU's work on the step
    before. Close it (or use it as a context manager) to stop the thread.
    """

    def __init__(self, pool: NoisyImagePool, rng: np.random.Generator, batch: int, size: int, *,
                 photometric_augment: bool, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._args = (pool, rng, batch, size, photometric_augment)
        self._thread = threading.Thread(target=self._produce, name="bsgd-patches", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        pool, rng, batch, size, photometric_augment = self._args
        while not self._stop.is_set():
            try:
                item: object = (sample_patches(pool, rng, batch, size, photometric_augment=photometric_augment),
                                copy.deepcopy(rng.bit_generator.state))
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def next(self) -> tuple[np.ndarray, dict]:
        """(patches, generator state after drawing them)."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> PatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_pool(folder: Path, *, patch: int, cache_megabytes: int = 2048) -> NoisyImagePool:
    """A pool of packed Bayer planes from the RAW files under ``folder`` (``--domain raw``).

    ``patch`` is in packed (half-resolution) pixels. Non-RAW and non-Bayer files are listed in
    ``pool.skipped`` with the reason. Patches are flipped without breaking the Bayer geometry
    (:func:`bsgd_cli.raw.bayer.augment_bayer`), which needs one extra packed pixel around each patch.
    """
    try:
        return NoisyImagePool.from_folder(
            Path(folder), min_side=patch + 1, reader=read_training_planes, cache_megabytes=cache_megabytes,
            augmentation=Augmentation(augment_bayer, margin=1),
        )
    except TrainingError as exc:
        raise TrainingError(f"{exc}; --domain raw trains on camera RAW files with a Bayer mosaic") from exc
