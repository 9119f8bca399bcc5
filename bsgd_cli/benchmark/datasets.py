"""Benchmark data sets in their official layouts, read lazily one sample at a time.

Kinds (``root`` is a folder unless said otherwise; ``limit`` caps the number of samples yielded):

* ``sidd``: a folder (or one of its files) with ``ValidationNoisyBlocksSrgb.mat`` + ``ValidationGtBlocksSrgb.mat``
  (with reference; preferred when both sets are present) or ``BenchmarkNoisyBlocksSrgb.mat`` (submission mode).
  Keys as the file names, uint8 [N, B, H, W, 3] (officially [40, 32, 256, 256, 3]); samples are blocks
  ``II_BB`` (0-based). v5/v7 files load whole with scipy.io (~250 MB); v7.3 (HDF5) files block by block.
* ``sidd-medium``: ``root/Data/<scene>/NOISY_SRGB_010.PNG`` + ``GT_SRGB_010.PNG`` (and ``_011``); ``root``
  may also be the ``Data`` folder itself.
* ``dnd``: ``root/info.mat`` + ``root/images_srgb/0001.mat`` ... (see :func:`_dnd`); 512x512 crops, no
  reference (submission mode).
* ``polyu``, ``cc``: one folder of ``*_real.*`` noisy images matched with ``*_mean.*`` references.
* ``pairs``: ``root/noisy`` + ``root/clean`` (or ``root/gt``) folders, or one flat folder. Matching rule: a
  noisy file pairs with the clean file of the identical stem; otherwise stems are compared after stripping one
  noisy suffix (``_noisy``, ``_noise``, ``_real``, ``_n``) and one clean suffix (``_gt``, ``_clean``,
  ``_mean``, ``_c``), case-insensitively, e.g. ``01_noise.png`` <-> ``01_gt.png`` (Nam / CBDNet layout).
  In a flat folder every image must carry one of those suffixes. Unmatched files are an error.
* ``sidd-pair``: ``root/noisy.mat`` (key ``im_noisy``) + ``root/gt.mat`` (key ``im_gt``), uint8 HxWx3.
* ``noisy``: a folder of images, no reference.

Images are read with Pillow as RGB: 8-bit files give uint8 HxWx3; 16-bit files give float32 HxWx3 in [0, 1]
(16-bit colour PNG/TIFF through OpenCV when installed, since Pillow drops their low byte).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bsgd_cli.config import DATASET_KINDS
from bsgd_cli.errors import ConfigError, DatasetError, ImageReadError

KINDS = DATASET_KINDS
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm"})
NOISY_SUFFIXES = ("_noisy", "_noise", "_real", "_n")
CLEAN_SUFFIXES = ("_gt", "_clean", "_mean", "_c")
SIDD_VALIDATION = ("ValidationNoisyBlocksSrgb", "ValidationGtBlocksSrgb")
SIDD_BENCHMARK = "BenchmarkNoisyBlocksSrgb"


@dataclass
class Sample:
    """One benchmark item: ``noisy`` HxWx3 (uint8, or float32 [0, 1]); ``clean`` the same or None."""

    name: str
    noisy: np.ndarray
    clean: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A lazily read data set. ``submission`` is "sidd" or "dnd" for hidden-reference benchmarks, else None."""

    kind: str
    root: Path
    has_reference: bool
    length: int
    samples: Callable[[], Iterator[Sample]] = field(repr=False)
    submission: str | None = None

    @property
    def name(self) -> str:
        """Short label for reports: the folder name, or the file stem when ``root`` is a file."""
        return self.root.stem if self.root.is_file() else self.root.name

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Sample]:
        return itertools.islice(self.samples(), self.length)


def load_dataset(kind: str, root: Path, *, limit: int | None = None) -> Dataset:
    """Open data set ``root`` of kind ``kind`` (one of :data:`KINDS`) and check its layout; read no images yet."""
    if kind not in KINDS:
        raise ConfigError(f"unknown data set kind {kind!r}; choose one of {', '.join(KINDS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: data set not found; check the path given for the {kind} data set")
    builders: dict[str, Callable[[Path], Dataset]] = {
        "sidd": _sidd, "sidd-medium": _sidd_medium, "dnd": _dnd, "pairs": _pairs, "sidd-pair": _sidd_pair,
        "noisy": _noisy, "polyu": lambda r: _flat_pairs("polyu", r, ("_real",), ("_mean",)),
        "cc": lambda r: _flat_pairs("cc", r, ("_real",), ("_mean",)),
    }
    dataset = builders[kind](root)
    if limit is not None and limit < dataset.length:
        dataset = Dataset(dataset.kind, dataset.root, dataset.has_reference, limit, dataset.samples,
                          dataset.submission)
    return dataset


# ----------------------------------------------------------------------------------------------- images
def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB: uint8 HxWx3 for 8-bit files, float32 HxWx3 in [0, 1] for 16-bit ones."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rawmode = str(image.tile[0].args) if image.tile else ""
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = np.asarray(image, dtype=np.float32) / 65535.0
                return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
            if image.mode == "RGB" and ";16" in rawmode:
                deep = _read_16bit_colour(path)
                if deep is not None:
                    return deep
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ImageReadError(f"{path}: cannot read image ({error}); check that the file is a valid image") from error


def _read_16bit_colour(path: Path) -> np.ndarray | None:
    try:
        import cv2
    except ImportError:  # Pillow's 8-bit reading is the fallback
        return None
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        return None
    return (data[..., 2::-1].astype(np.float32) / 65535.0).copy()


def _images_in(folder: Path) -> list[Path]:  # sorted, non-recursive
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _strip(stem: str, suffixes: Sequence[str]) -> str | None:
    lowered = stem.lower()
    for suffix in suffixes:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def _listing(paths: Sequence[Path], most: int = 8) -> str:
    return ", ".join(p.name for p in paths[:most]) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def match_pairs(noisy: Sequence[Path], clean: Sequence[Path], noisy_suffixes: Sequence[str],
                clean_suffixes: Sequence[str], where: Path) -> list[tuple[str, Path, Path]]:
    """Pair noisy and clean files by the module's matching rule; returns (name, noisy, clean), sorted by name."""
    by_stem = {p.stem: p for p in clean}
    by_key: dict[str, Path] = {}
    for path in clean:
        key = _strip(path.stem, clean_suffixes) or path.stem
        if key in by_key:
            raise DatasetError(f"{where}: {by_key[key].name} and {path.name} match the same noisy name; "
                               "remove or rename one of them")
        by_key[key] = path
    pairs: dict[str, tuple[str, Path, Path]] = {}
    unmatched: list[Path] = []
    used: set[Path] = set()
    for path in noisy:
        key = _strip(path.stem, noisy_suffixes) or path.stem
        partner = by_stem.get(path.stem) or by_key.get(key)
        if partner is None or partner in used:
            unmatched.append(path)
            continue
        used.add(partner)
        pairs[key] = (key, path, partner)
    unmatched += [p for p in clean if p not in used]
    if unmatched:
        raise DatasetError(
            f"{where}: {len(unmatched)} file(s) without a partner: {_listing(unmatched)}; name pairs like "
            f"NAME{noisy_suffixes[0]}.png / NAME{clean_suffixes[0]}.png (or identical names in noisy/ and clean/)"
        )
    if not pairs:
        raise DatasetError(f"{where}: no noisy/clean image pairs found; check the folder and the data set kind")
    return sorted(pairs.values())


def _pair_dataset(kind: str, root: Path, pairs: list[tuple[str, Path, Path]]) -> Dataset:
    def samples() -> Iterator[Sample]:
        for name, noisy_path, clean_path in pairs:
            noisy, clean = read_rgb(noisy_path), read_rgb(clean_path)
            if noisy.shape != clean.shape:
                raise DatasetError(f"{noisy_path} is {noisy.shape[:2]} but {clean_path} is {clean.shape[:2]}; "
                                   "the noisy image and its reference must have the same size")
            yield Sample(name, noisy, clean, {"noisy_path": str(noisy_path), "clean_path": str(clean_path)})

    return Dataset(kind, root, True, len(pairs), samples)


def _require_dir(root: Path, kind: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"{root}: the {kind} data set must be a folder; give the folder holding the images")

def _flat_pairs(kind: str, root: Path, noisy_suffixes: Sequence[str], clean_suffixes: Sequence[str]) -> Dataset:
    _require_dir(root, kind)
    noisy, clean, other = [], [], []
    for path in _images_in(root):
        if _strip(path.stem, noisy_suffixes) is not None:
            noisy.append(path)
        elif _strip(path.stem, clean_suffixes) is not None:
            clean.append(path)
        else:
            other.append(path)
    if other:
        raise DatasetError(f"{root}: {len(other)} image(s) are neither noisy ({'/'.join(noisy_suffixes)}) nor "
                           f"reference ({'/'.join(clean_suffixes)}): {_listing(other)}; rename or move them")
    return _pair_dataset(kind, root, match_pairs(noisy, clean, noisy_suffixes, clean_suffixes, root))


def _pairs(root: Path) -> Dataset:
    _require_dir(root, "pairs")
    clean_dir = next((root / n for n in ("clean", "gt") if (root / n).is_dir()), None)
    if (root / "noisy").is_dir() and clean_dir is not None:
        pairs = match_pairs(_images_in(root / "noisy"), _images_in(clean_dir), NOISY_SUFFIXES, CLEAN_SUFFIXES, root)
        return _pair_dataset("pairs", root, pairs)
    return _flat_pairs("pairs", root, NOISY_SUFFIXES, CLEAN_SUFFIXES)


def _noisy(root: Path) -> Dataset:
    _require_dir(root, "noisy")
    paths = _images_in(root)
    if not paths:
        raise DatasetError(f"{root}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))}); check the folder")

    def samples() -> Iterator[Sample]:
        for path in paths:
            yield Sample(path.stem, read_rgb(path), None, {"noisy_path": str(path)})

    return Dataset("noisy", root, False, len(paths), samples)


def _sidd_medium(root: Path) -> Dataset:
    _require_dir(root, "sidd-medium")
    data = root / "Data" if (root / "Data").is_dir() else root
    pairs, unmatched = [], []
    for scene in sorted(p for p in data.iterdir() if p.is_dir()):
        files = {p.name.upper(): p for p in scene.iterdir()}
        for tag in ("010", "011"):
            noisy, clean = files.get(f"NOISY_SRGB_{tag}.PNG"), files.get(f"GT_SRGB_{tag}.PNG")
            if noisy and clean:
                pairs.append((f"{scene.name}_{tag}", noisy, clean))
            elif noisy or clean:
                unmatched.append(noisy or clean)
    if unmatched:
        raise DatasetError(
            f"{data}: {len(unmatched)} file(s) without a partner: {_listing([p for p in unmatched if p is not None])}; "
            "each NOISY_SRGB_0XX.PNG needs the GT_SRGB_0XX.PNG of the same scene"
        )
    if not pairs:
        raise DatasetError(f"{data}: no <scene>/NOISY_SRGB_010.PNG + GT_SRGB_010.PNG found; give the "
                           "SIDD_Medium_Srgb folder (the one holding Data/)")
    return _pair_dataset("sidd-medium", root, pairs)


# ------------------------------------------------------------------------------------------ MATLAB files
def is_hdf5(path: Path) -> bool:
    """True when ``path`` is an HDF5 (MATLAB 7.3) file: signature at offset 0, 512, 1024 or 2048."""
    with open(path, "rb") as handle:
        head = handle.read(2056)
    return any(head[o : o + 8] == b"\x89HDF\r\n\x1a\n" for o in (0, 512, 1024, 2048))


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise DatasetError("reading MATLAB 7.3 files needs h5py; install it with `pip install h5py`") from error
    return h5py


def _mat_shape(path: Path, key: str) -> tuple[tuple[int, ...], str]:
    """(MATLAB-order shape, dtype name) of variable ``key`` without loading it."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; it should hold the MATLAB variable {key!r}")
    if is_hdf5(path):
        with _h5py().File(path, "r") as handle:
            if key not in handle:
                raise DatasetError(f"{path}: no variable {key!r} (found {', '.join(sorted(handle.keys()))}); "
                                   "check that this is the right file")
            return tuple(reversed(handle[key].shape)), str(handle[key].dtype)
    from scipy.io import whosmat

    try:
        variables = {name: (shape, cls) for name, shape, cls in whosmat(str(path))}
    except Exception as error:
        raise DatasetError(f"{path}: not a readable MATLAB file ({error}); re-download it") from error
    if key not in variables:
        raise DatasetError(f"{path}: no variable {key!r} (found {', '.join(sorted(variables)) or 'none'}); "
                           "check that this is the right file")
    return tuple(variables[key][0]), variables[key][1]


def _load_mat(path: Path, key: str) -> np.ndarray:
    """The whole variable in MATLAB order (HDF5 storage is transposed back)."""
    if is_hdf5(path):
        with _h5py().File(path, "r") as handle:
            return np.asarray(handle[key]).T
    from scipy.io import loadmat

    return loadmat(str(path), variable_names=[key])[key]


def _sidd(root: Path) -> Dataset:
    folder = root.parent if root.is_file() else root
    names = {root.stem} if root.is_file() else {p.stem for p in folder.glob("*.mat")}
    if SIDD_VALIDATION[0] in names or SIDD_VALIDATION[1] in names:
        noisy_path, clean_path = (folder / f"{n}.mat" for n in SIDD_VALIDATION)
    elif SIDD_BENCHMARK in names:
        noisy_path, clean_path = folder / f"{SIDD_BENCHMARK}.mat", None
    else:
        raise DatasetError(f"{root}: no SIDD block file; expected {SIDD_VALIDATION[0]}.mat + "
                           f"{SIDD_VALIDATION[1]}.mat or {SIDD_BENCHMARK}.mat")
    shape = _check_blocks(noisy_path, noisy_path.stem)
    if clean_path is not None and _check_blocks(clean_path, clean_path.stem) != shape:
        raise DatasetError(f"{clean_path}: shape differs from {noisy_path.name} {list(shape)}; use the matching "
                           "validation files")

    def samples() -> Iterator[Sample]:
        noisy = _load_mat(noisy_path, noisy_path.stem)
        clean = _load_mat(clean_path, clean_path.stem) if clean_path is not None else None
        for image, block in itertools.product(range(shape[0]), range(shape[1])):
            yield Sample(f"{image:02d}_{block:02d}", noisy[image, block],
                         None if clean is None else clean[image, block],
                         {"image": image, "block": block, "grid": [shape[0], shape[1]]})

    return Dataset("sidd", root, clean_path is not None, shape[0] * shape[1], samples,
                   None if clean_path is not None else "sidd")


def _check_blocks(path: Path, key: str) -> tuple[int, ...]:
    shape, dtype = _mat_shape(path, key)
    if len(shape) != 5 or shape[4] != 3 or dtype != "uint8":
        raise DatasetError(f"{path}: {key} is {dtype} {list(shape)}, expected uint8 [N, B, H, W, 3] "
                           "(officially [40, 32, 256, 256, 3]); re-download the SIDD sRGB block file")
    return shape


def _sidd_pair(root: Path) -> Dataset:
    folder = root.parent if root.is_file() else root
    files = ((folder / "noisy.mat", "im_noisy"), (folder / "gt.mat", "im_gt"))
    for path, key in files:
        shape, dtype = _mat_shape(path, key)
        if len(shape) != 3 or shape[2] != 3 or dtype != "uint8":
            raise DatasetError(f"{path}: {key} is {dtype} {list(shape)}, expected uint8 HxWx3")

    def samples() -> Iterator[Sample]:
        noisy, clean = (_load_mat(path, key) for path, key in files)
        if noisy.shape != clean.shape:
            raise DatasetError(f"{files[0][0]} and {files[1][0]} differ in size; use a matching pair")
        yield Sample(folder.name, noisy, clean, {})

    return Dataset("sidd-pair", folder, True, 1, samples)


def _dnd(root: Path) -> Dataset:
    """DND sRGB (Ploetz and Roth 2017) as read by the official ``dnd_denoise.py`` / ``dnd_denoise.m``.

    ``info.mat`` (MATLAB 7.3): group ``info``, dataset ``boundingboxes`` holding one object reference per image
    (stored 1x50). Each referenced array is MATLAB 20x4 (stored transposed, 4x20) with rows
    ``[y1, x1, y2, x2]``, 1-based and inclusive: MATLAB crops ``I(b(1):b(3), b(2):b(4), :)``, Python
    ``I[y1 - 1:y2, x1 - 1:x2]``. ``images_srgb/%04d.mat`` holds ``InoisySRGB``, MATLAB HxWx3 stored (3, W, H);
    crops are read with HDF5 slicing, so an image is never loaded whole. Samples are named ``IIII_KK`` (1-based,
    as DND's per-crop files) and carry ``image_index``, ``crop_index`` (1-based) and ``bbox`` in ``meta``.
    """
    info_path, image_dir = root / "info.mat", root / "images_srgb"
    if not root.is_dir() or not info_path.is_file() or not image_dir.is_dir():
        raise DatasetError(f"{root}: not a DND folder; it must hold info.mat and images_srgb/0001.mat ...")
    if not is_hdf5(info_path):
        raise DatasetError(f"{info_path}: not a MATLAB 7.3 (HDF5) file; re-download DND's info.mat")
    h5py = _h5py()
    with h5py.File(info_path, "r") as handle:
        refs = handle.get("info/boundingboxes") if isinstance(handle.get("info"), h5py.Group) else None
        if refs is None:
            raise DatasetError(f"{info_path}: no info/boundingboxes; re-download DND's info.mat")
        boxes = []
        for ref in np.asarray(refs).ravel():
            array = np.asarray(handle[ref]).T
            if array.ndim != 2 or array.shape[1] != 4:
                raise DatasetError(f"{info_path}: a bounding-box array is {list(array.shape)}, expected Kx4")
            boxes.append(array.astype(np.int64))
    paths = [image_dir / f"{i:04d}.mat" for i in range(1, len(boxes) + 1)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{image_dir}: missing {_listing(missing)}; DND needs every image named in info.mat")

    def samples() -> Iterator[Sample]:
        for index, (path, image_boxes) in enumerate(zip(paths, boxes, strict=True), start=1):
            with h5py.File(path, "r") as handle:
                stored = handle.get("InoisySRGB")
                if stored is None or stored.ndim != 3 or stored.shape[0] != 3:
                    raise DatasetError(f"{path}: expected InoisySRGB stored as (3, W, H); re-download it")
                for crop_index, (y1, x1, y2, x2) in enumerate(image_boxes.tolist(), start=1):
                    if not (1 <= x1 <= x2 <= stored.shape[1] and 1 <= y1 <= y2 <= stored.shape[2]):
                        raise DatasetError(f"{info_path}: box {crop_index} of image {index} lies outside {path}")
                    crop = np.asarray(stored[:, x1 - 1 : x2, y1 - 1 : y2], dtype=np.float32).T
                    yield Sample(f"{index:04d}_{crop_index:02d}", np.ascontiguousarray(crop), None,
                                 {"image_index": index, "crop_index": crop_index, "crops_in_image": len(image_boxes),
                                  "bbox": [y1, x1, y2, x2]})

    return Dataset("dnd", root, False, sum(len(b) for b in boxes), samples, "dnd")
