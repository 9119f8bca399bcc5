"""RAW-domain denoising: the camera's Bayer mosaic, before demosaicing (``--domain raw``).

In the undeveloped mosaic, noise is close to independent per pixel, which is the blind-spot
assumption, so no pixel-shuffle downsampling is needed (strides 1). The pipeline:

1. :func:`read_planes`: LibRaw's visible mosaic, packed into 4 half-resolution planes in R, G1, G2,
   B order (G1 = the green in the red rows) whatever the file's 2x2 pattern (RGGB, GRBG, GBRG,
   BGGR), normalised as ``(raw - black) / (white - black)``. Values below the black level are kept
   (slightly negative): clipping them at 0 would bias dark regions upwards, and the blind-spot
   target E[y | context] is only the clean signal when the noise keeps its zero mean. Values above
   the white level are clipped to 1.
2. The model works in the same model space as for sRGB, ``x * 2 - 1`` (so [0, 1] -> [-1, 1]; dark
   sensor data sits near -1 and a little below). Outputs are clamped to [0, 1].
3. :func:`planes_to_mosaic`: back to the sensor's integer range (``x * (white - black) + black``,
   rounded and clipped) in the file's own pattern; an odd last row/column is left as it was.
4. :func:`write_raw_result`: either the denoised mosaic is written into LibRaw's ``raw_image`` and
   developed the same way as :func:`bsgd_cli.io.read_raw` (camera white balance, no
   auto-brightening, 16-bit, sRGB) to a TIFF (or any format ``write_image`` knows), or it is saved
   as a DNG carrying the input's CFA, levels, colour matrices and white balance, so it stays
   editable in a raw developer.

Files without a 2x2 Bayer mosaic (Fujifilm X-Trans, Foveon, linear DNG) raise
:class:`NotBayerError`; training skips them, and ``bsgd denoise`` falls back to the developed sRGB
image with an sRGB model (see :func:`fallback_input`). Library code: nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..checkpoint import load_model
from ..config import Domain, ModelConfig
from ..engine.model import LoadedModel
from ..errors import ConfigError, ImageReadError, ModelFileError
from ..io import is_raw_path, read_raw, write_dng, write_image
from ..io._meta import read_metadata
from ..io.imagedata import ImageData
from ..io.raw import RAW_COLOUR_SPACE, BayerData, _open, develop, read_bayer
from ..viz.compare import before_after
from .bayer import PLANES, NotBayerError, normalise_planes, plane_levels, unpack_bayer

RAW_PD_STRIDE = 1
"""Default pixel-shuffle stride in the RAW domain (train and inference): none is needed."""


# ------------------------------------------------------------------------------------ configuration
def raw_model_config(base: ModelConfig, *, pd_train: int | None = None, pd_infer: int | None = None) -> ModelConfig:
    """``base`` (a preset) turned into a RAW-domain config: 4 channels, PD strides default 1."""
    blind_spot = replace(
        base.blind_spot,
        pd_train=RAW_PD_STRIDE if pd_train is None else pd_train,
        pd_infer=RAW_PD_STRIDE if pd_infer is None else pd_infer,
    )
    return replace(base, domain="raw", channels=len(PLANES), blind_spot=blind_spot)


def resolve_domain(
    config: ModelConfig, requested: str | None, raw_output: str = "tiff", model_name: str = "the model"
) -> Domain:
    """The domain to denoise in: ``requested``, or the model's own when None.

    Raises ConfigError when the model cannot work in the requested domain, or for a DNG output
    outside the RAW domain.
    """
    domain = requested or config.domain
    if domain not in ("srgb", "raw"):
        raise ConfigError(f"unknown domain {domain!r}; use srgb or raw")
    if domain == "raw" and config.domain != "raw":
        raise ConfigError(
            f"--domain raw needs a RAW-domain model, and {model_name} is an sRGB model; train one with "
            "'bsgd train --domain raw' on RAW files, or drop --domain raw to denoise the developed images"
        )
    if domain == "srgb" and config.domain == "raw":
        raise ConfigError(
            f"{model_name} is a RAW-domain model (4-channel Bayer planes): it denoises camera RAW files with "
            "--domain raw; use an sRGB model for developed images"
        )
    if raw_output not in ("tiff", "dng"):
        raise ConfigError(f"--raw-output must be tiff or dng, got {raw_output!r}")
    if raw_output == "dng" and domain != "raw":
        raise ConfigError(
            "--raw-output dng writes the denoised Bayer mosaic and needs --domain raw and a RAW-domain model"
        )
    return "raw" if domain == "raw" else "srgb"


# ------------------------------------------------------------------------------------------ reading
@dataclass
class RawInput:
    """One decoded RAW input for the RAW-domain pipeline.

    pixels: float32 (H/2, W/2, 4) normalised planes (R, G1, G2, B), what the model sees; for a
        ``fallback`` input (no Bayer mosaic) the developed sRGB image (H, W, 3) instead.
    bayer: the mosaic as read (sensor orientation); None for a fallback input.
    like: for a fallback input, the developed :class:`~bsgd_cli.io.ImageData` (for writing).
    """

    pixels: np.ndarray
    source: Path
    bayer: BayerData | None = None
    warnings: list[str] = field(default_factory=list)
    fallback: bool = False
    like: object | None = None

    @property
    def megapixels(self) -> float:
        if self.bayer is not None:
            return self.bayer.raw_values.size / 1e6
        return self.pixels.shape[0] * self.pixels.shape[1] / 1e6


def read_planes(path: str | Path, *, max_megapixels: float = 200.0) -> RawInput:
    """Read a camera RAW file into normalised Bayer planes (see the module docstring).

    Raises ImageReadError for files that are not RAW, and NotBayerError (a subclass) for RAW files
    without a 2x2 Bayer mosaic.
    """
    path = Path(path)
    if not is_raw_path(path):
        raise ImageReadError(
            f"{path}: not a camera RAW file; the RAW domain reads undeveloped sensor data "
            "(DNG, NEF, CR2, ARW, ...): use an sRGB model for developed images"
        )
    bayer = read_bayer(path, max_megapixels=max_megapixels)
    planes = normalise_planes(bayer)
    notes: list[str] = []
    h, w = bayer.raw_values.shape
    if h % 2 or w % 2:
        notes.append(f"odd mosaic size {w}x{h}: the last row/column is left as it was")
    return RawInput(pixels=planes, source=path, bayer=bayer, warnings=notes)


def read_training_planes(path: Path) -> np.ndarray:
    """The reader for RAW-domain training pools: normalised planes (H/2, W/2, 4)."""
    return read_planes(path).pixels


def fallback_input(path: Path, *, max_megapixels: float = 200.0) -> RawInput:
    """A non-Bayer RAW file developed to sRGB, flagged to be denoised by an sRGB model instead."""
    image = read_raw(path, max_megapixels=max_megapixels)
    note = (
        "no 2x2 Bayer mosaic (X-Trans or similar): denoised the developed sRGB image with the default "
        "sRGB model instead of the RAW-domain model"
    )
    return RawInput(pixels=image.pixels, source=Path(path), warnings=[note], fallback=True, like=image)


def read_raw_input(path: str | Path, *, max_megapixels: float = 200.0) -> RawInput:
    """:func:`read_planes`, or :func:`fallback_input` for RAW files without a Bayer mosaic."""
    try:
        return read_planes(path, max_megapixels=max_megapixels)
    except NotBayerError:
        return fallback_input(Path(path), max_megapixels=max_megapixels)


def load_fallback_model(source: Path) -> LoadedModel:
    """The default (embedded) sRGB model for non-Bayer files; a clear error when there is none."""
    try:
        loaded = load_model(None)
    except ModelFileError as exc:
        raise ImageReadError(
            f"{source}: not a Bayer mosaic (e.g. X-Trans), so the RAW-domain model cannot denoise it, and no "
            "default sRGB model is installed to denoise the developed image instead; run 'bsgd denoise' "
            "on it with an sRGB --model"
        ) from exc
    if loaded.model.config.domain != "srgb":
        raise ImageReadError(f"{source}: not a Bayer mosaic, and the default model is not an sRGB model")
    return loaded


# ------------------------------------------------------------------------------------------ writing
def planes_to_mosaic(planes: np.ndarray, raw_input: RawInput) -> np.ndarray:
    """Denoised planes (H/2, W/2, 4) in [0, 1] -> the uint16 visible mosaic in the file's pattern."""
    bayer = raw_input.bayer
    assert bayer is not None
    black, span = plane_levels(bayer)
    values = np.clip(np.rint(np.clip(planes, 0.0, 1.0) * span + black), 0, 65535).astype(np.uint16)
    mosaic = bayer.raw_values.copy()
    h2, w2 = planes.shape[:2]
    mosaic[: 2 * h2, : 2 * w2] = unpack_bayer(values, bayer.cfa_pattern)
    return mosaic


def develop_mosaic(source: Path, mosaic: np.ndarray) -> np.ndarray:
    """Develop ``mosaic`` (the visible area, uint16) with the rest of ``source``'s RAW file.

    The mosaic replaces LibRaw's sensor data, then :func:`bsgd_cli.io.raw.develop` demosaics it exactly
    as :func:`bsgd_cli.io.read_raw` develops a file. Returns float32 (H, W, 3) in [0, 1], upright.
    """
    raw = _open(source)
    try:
        return develop(raw, source, mosaic)
    finally:
        raw.close()


def _template_ok(source: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(source) as tif:
            return len(tif.pages) > 0
    except Exception:  # not TIFF-structured (e.g. some vendor formats): no tags to copy
        return False


def write_raw_dng(target: Path, mosaic: np.ndarray, raw_input: RawInput) -> None:
    """Write the denoised mosaic as a DNG with the input's CFA, levels and colour tags.

    DNG inputs are the template for every camera tag. Other RAW formats give their make, model and
    orientation (when TIFF-structured), and LibRaw's colour matrix and as-shot white balance.
    """
    bayer = raw_input.bayer
    assert bayer is not None
    source = raw_input.source
    template = source if _template_ok(source) else None
    color_matrix = None
    neutral: Sequence[float] | None = None
    if source.suffix.lower() != ".dng":
        matrix = bayer.rgb_xyz_matrix
        if matrix is not None and np.any(matrix[:3]):
            color_matrix = np.asarray(matrix[:3], dtype=np.float64)
        wb = bayer.camera_white_balance
        if len(wb) >= 3 and all(v > 0 for v in wb[:3]):
            neutral = (wb[1] / wb[0], 1.0, wb[1] / wb[2])
    write_dng(
        target,
        mosaic,
        cfa_pattern=bayer.cfa_pattern,
        black_level=bayer.black_level,
        white_level=bayer.white_level,
        color_matrix=color_matrix,
        template=template,
        as_shot_neutral=neutral,
    )


def write_raw_result(
    target: Path,
    denoised: np.ndarray,
    raw_input: RawInput,
    *,
    bit_depth: int | None = None,
    quality: int = 95,
    compare: bool = False,
) -> Path:
    """Write one RAW-domain result to ``target`` (.dng: the mosaic; else developed) and return it.

    ``denoised`` is the model's output: planes, or for a fallback input the sRGB image. With
    ``compare`` a NAME_compare.png of the developed input and output is written beside it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    developed: np.ndarray | None = None
    if raw_input.fallback:
        developed = denoised
        write_image(target, developed, like=raw_input.like, bit_depth=bit_depth, quality=quality)  # type: ignore[arg-type]
    else:
        mosaic = planes_to_mosaic(denoised, raw_input)
        if target.suffix.lower() == ".dng":
            write_raw_dng(target, mosaic, raw_input)
            if compare:
                developed = develop_mosaic(raw_input.source, mosaic)
        else:
            developed = develop_mosaic(raw_input.source, mosaic)
            like = read_raw_metadata(raw_input.source, developed)
            write_image(target, developed, like=like, bit_depth=bit_depth, quality=quality)
    if compare and developed is not None:
        noisy = raw_input.pixels if raw_input.fallback else read_raw(raw_input.source).pixels
        write_image(target.with_name(f"{target.stem}_compare.png"), before_after(noisy, developed), bit_depth=8)
    return target


def read_raw_metadata(source: Path, pixels: np.ndarray) -> ImageData:
    """An ImageData for ``pixels`` developed from ``source`` (metadata carried over, 16-bit, sRGB)."""
    return ImageData(
        pixels=pixels, alpha=None, channels_in=3, bit_depth=16, format="raw", icc_profile=None, source=source,
        is_raw=True, colour_space=RAW_COLOUR_SPACE, metadata=read_metadata(source)[0],
    )


def output_suffix(raw_output: str) -> str:
    """The extension of RAW-domain outputs: .dng for ``raw_output == "dng"``, else .tif."""
    return ".dng" if raw_output == "dng" else ".tif"


def training_model_config(
    base: ModelConfig, domain: str = "srgb", *, pd_train: int | None = None, pd_infer: int | None = None
) -> ModelConfig:
    """The model config ``bsgd train`` uses: a preset in ``domain``, with optional PD stride overrides."""
    if domain == "raw":
        return raw_model_config(base, pd_train=pd_train, pd_infer=pd_infer)
    if domain != "srgb":
        raise ConfigError(f"unknown domain {domain!r}; use srgb or raw")
    return base.with_pd_strides(pd_train, pd_infer)
