"""Submission files for the hidden-reference benchmarks: SIDD sRGB blocks and DND sRGB crops.

* SIDD (``SubmitSrgb.mat``, as written by the SIDD site's MATLAB demo): ``DenoisedBlocksSrgb`` a 40x32 cell of
  uint8 256x256x3 blocks, ``TimeMPSrgb`` seconds per megapixel (double), ``OptionalData`` a struct with
  ``MethodName``, ``Authors``, ``PaperTitle``, ``Venue``.
* DND (as ``bundle_submissions_srgb`` in DND's ``bundle_submissions.py``): one ``NNNN.mat`` per image
  (1-based, ``0001.mat`` .. ``0050.mat``) holding ``Idenoised`` a 1x20 cell of float32 HxWx3 crops in [0, 1]
  (the bounding-box order of ``info.mat``), ``israw`` = false and ``eval_version`` = '1.0'.

Both are written with ``scipy.io.savemat`` (MATLAB v5 format; numpy object arrays become cells, dicts
become structs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bsgd_cli.benchmark.metrics import to_uint8
from bsgd_cli.errors import BsgdError, ImageWriteError

SIDD_GRID = (40, 32)
DND_CROPS_PER_IMAGE = 20


def _block_u8(block: np.ndarray) -> np.ndarray:
    array = np.asarray(block)
    array = array if array.dtype == np.uint8 else to_uint8(array)
    if array.ndim != 3 or array.shape[2] != 3:
        raise BsgdError(f"a denoised SIDD block is {list(array.shape)}; blocks must be HxWx3 (256x256x3)")
    return np.ascontiguousarray(array)


def _save(path: Path, variables: dict[str, Any], *, compress: bool) -> None:
    from scipy.io import savemat

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        savemat(str(path), variables, do_compression=compress)
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write the submission file ({error}); check the folder") from error


def write_sidd_submission(
    path: Path,
    denoised_blocks: np.ndarray | Mapping[tuple[int, int], np.ndarray],
    seconds_per_mp: float,
    *,
    method_name: str = "bsgd",
    optional_data: Mapping[str, str] | None = None,
    grid: tuple[int, int] | None = None,
    allow_partial: bool = False,
) -> Path:
    """Write SIDD's ``SubmitSrgb.mat``; returns its path.

    ``path``: the .mat file, or a folder (the file is then ``path/SubmitSrgb.mat``). ``denoised_blocks``: uint8
    [N, B, H, W, 3] (officially [40, 32, 256, 256, 3]), or a dict {(image, block): HxWx3} with 0-based indices;
    float blocks in [0, 1] are quantised with :func:`~bsgd_cli.benchmark.metrics.to_uint8`. ``grid`` (N, B) defaults to
    the array's first two axes or the dict's largest indices + 1. Missing dict entries are an error unless
    ``allow_partial`` (they become zero blocks; such a file is for local checks, not for upload).
    """
    path = Path(path)
    if path.suffix.lower() != ".mat":
        path = path / "SubmitSrgb.mat"
    if isinstance(denoised_blocks, Mapping):
        blocks = dict(denoised_blocks)
        if not blocks:
            raise BsgdError("no denoised SIDD blocks to write; run the benchmark on at least one block")
    else:
        array = np.asarray(denoised_blocks)
        if array.ndim != 5:
            raise BsgdError(f"denoised SIDD blocks are {list(array.shape)}; expected [N, B, H, W, 3]")
        blocks = {(i, b): array[i, b] for i in range(array.shape[0]) for b in range(array.shape[1])}
    rows, cols = grid or (max(i for i, _ in blocks) + 1, max(b for _, b in blocks) + 1)
    first = _block_u8(next(iter(blocks.values())))
    missing = [(i, b) for i in range(rows) for b in range(cols) if (i, b) not in blocks]
    if missing and not allow_partial:
        raise BsgdError(f"{path}: {len(missing)} of {rows * cols} SIDD blocks are missing (first {missing[0]}); "
                        "denoise every block before writing a submission")
    cell = np.empty((rows, cols), dtype=object)
    for i in range(rows):
        for b in range(cols):
            block = _block_u8(blocks[(i, b)]) if (i, b) in blocks else np.zeros_like(first)
            if block.shape != first.shape:
                raise BsgdError(f"SIDD block ({i}, {b}) is {list(block.shape)}, others {list(first.shape)}")
            cell[i, b] = block
    optional = {"MethodName": method_name, "Authors": "", "PaperTitle": "", "Venue": ""}
    optional.update(optional_data or {})
    _save(path, {"DenoisedBlocksSrgb": cell, "TimeMPSrgb": float(seconds_per_mp), "OptionalData": optional},
          compress=True)
    return path


def write_dnd_submission(
    out_dir: Path,
    image_index: int,
    crops: Sequence[np.ndarray],
    *,
    allow_partial: bool = False,
) -> Path:
    """Write DND's bundled file ``out_dir/NNNN.mat`` for one image; returns its path.

    ``image_index`` is 1-based (0001 .. 0050, as DND's file names). ``crops``: the image's 20 denoised crops in
    ``info.mat`` order, each HxWx3 (512x512x3) float in [0, 1]; stored as float32. Fewer than 20 crops is an
    error unless ``allow_partial`` (for local checks only; DND's server expects 20).
    """
    if image_index < 1:
        raise BsgdError(f"DND image index {image_index} is not 1-based; the first image is 1 (0001.mat)")
    if len(crops) != DND_CROPS_PER_IMAGE and not (allow_partial and 0 < len(crops) < DND_CROPS_PER_IMAGE):
        raise BsgdError(f"DND image {image_index:04d} has {len(crops)} denoised crops; DND needs exactly 20")
    cell = np.empty((len(crops),), dtype=object)
    for k, crop in enumerate(crops):
        array = np.asarray(crop, dtype=np.float32)
        if array.ndim != 3 or array.shape[2] != 3:
            raise BsgdError(f"DND crop {k + 1} of image {image_index:04d} is {list(array.shape)}; expected HxWx3")
        cell[k] = np.ascontiguousarray(array)
    path = Path(out_dir) / f"{image_index:04d}.mat"
    _save(path, {"Idenoised": cell, "israw": False, "eval_version": "1.0"}, compress=False)
    return path
