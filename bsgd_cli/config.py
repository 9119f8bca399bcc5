"""Configuration: frozen keyword-only dataclasses, converted to and from plain dicts.

A model file stores :class:`ModelConfig` (and the sampler defaults measured for it) as JSON in its
safetensors metadata, so one file rebuilds its model. Unknown keys in a stored config are an error
(a newer, incompatible file), missing keys take the defaults below. Files written before the Wiener
settings were nested in :class:`SamplerConfig` (flat ``wiener_*`` keys) are read as they were.

The names of the modes, precisions, domains, output formats and benchmark data sets are defined here
once (``Mode`` and ``MODES`` ...); the command line and the library take their choices from these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from . import checks
from .errors import ConfigError

Prediction = Literal["eps", "v"]
Mode = Literal["bsgd", "bsn", "bsn-r3", "fast"]
"""bsgd: guided diffusion sampling; bsn: the blind-spot branch alone; bsn-r3: with AP-BSN's random
replacing refinement; fast: the distilled single-pass student."""
MaskKind = Literal["iid", "complementary"]
Refine = Literal["none", "wiener"]
Precision = Literal["fp32", "bf16", "fp16"]
RuntimePrecision = Literal["auto", Precision]
"""What a user may ask for: "auto" is bf16 for the ``fast`` mode on CPU and CUDA, else fp32."""
Domain = Literal["srgb", "raw"]
TrainedBranch = Literal["both", "bsn", "diffusion"]
Branch = Literal[TrainedBranch, "student"]
StudentInit = Literal["teacher", "fresh"]
StudentNorm = Literal["group", "affine", "mixed"]
STUDENT_NORMS: tuple[StudentNorm, ...] = ("group", "affine", "mixed")
PresetName = Literal["small", "gpu", "paper", "tiny"]
OutputExt = Literal["keep", "png", "tif", "jpg", "webp", "heic", "avif", "jxl"]
"""``--ext``: keep the input's format (RAW: 16-bit TIFF), or one of these."""
RawOutput = Literal["tiff", "dng"]
"""RAW domain: the developed image as a TIFF, or the denoised mosaic as a DNG."""
DatasetKind = Literal["sidd", "sidd-medium", "dnd", "polyu", "cc", "pairs", "sidd-pair", "noisy"]
"""Benchmark data sets in their official layouts (:mod:`bsgd_cli.benchmark.datasets`)."""
MODES: tuple[Mode, ...] = get_args(Mode)
REFINES: tuple[Refine, ...] = get_args(Refine)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
RUNTIME_PRECISIONS: tuple[RuntimePrecision, ...] = get_args(RuntimePrecision)
OUTPUT_EXTS: tuple[OutputExt, ...] = get_args(OutputExt)
RAW_OUTPUTS: tuple[RawOutput, ...] = get_args(RawOutput)
DATASET_KINDS: tuple[DatasetKind, ...] = get_args(DatasetKind)
DOMAINS: tuple[Domain, ...] = get_args(Domain)
MAX_WIDTH = 4096
"""Widest network a config may ask for (the paper preset uses 256 channels at its deepest level)."""


def _check_widths(owner: str, width: int, mults: tuple[int, ...], blocks_per_level: int) -> None:
    """Network sizes a model file may ask for: refused before anything is built (a hostile file
    asking for a width of 10**7 would otherwise try to allocate petabytes)."""
    ok = isinstance(width, int) and isinstance(blocks_per_level, int) and isinstance(mults, tuple)
    ok = ok and 1 <= width <= MAX_WIDTH and 1 <= blocks_per_level <= 16 and 1 <= len(mults) <= 8
    ok = ok and all(isinstance(m, int) and 1 <= m and width * m <= MAX_WIDTH for m in mults)
    if not ok:
        raise ConfigError(
            f"{owner}: width {width!r}, mults {mults!r}, blocks_per_level {blocks_per_level!r} are out of range "
            f"(widths 1..{MAX_WIDTH} channels, at most 8 levels of 1..16 blocks)"
        )


@dataclass(frozen=True, kw_only=True)
class BlindSpotConfig:
    """Shifted-convolution blind-spot U-Net (Laine et al. 2019) with FiLM time conditioning.

    ``width`` channels at full resolution, doubling ``depth`` times is avoided on purpose (CPU cost):
    widths are ``width * mults[i]``. ``pd_train`` / ``pd_infer`` are the pixel-shuffle strides.
    """

    width: int = 32
    mults: tuple[int, ...] = (1, 1, 2)
    blocks_per_level: int = 1
    head_width: int = 64
    pd_train: int = 5
    pd_infer: int = 2
    residual: bool = True

    def __post_init__(self) -> None:
        _check_widths("blind_spot", self.width, self.mults, self.blocks_per_level)
        strides_ok = all(isinstance(v, int) and 1 <= v <= 16 for v in (self.pd_train, self.pd_infer))
        if not strides_ok or not isinstance(self.head_width, int) or not 1 <= self.head_width <= MAX_WIDTH:
            raise ConfigError(
                f"blind_spot: head_width {self.head_width!r} or PD strides {self.pd_train!r}/{self.pd_infer!r} "
                "out of range"
            )


@dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """Ordinary diffusion U-Net (full receptive field) predicting eps or v."""

    width: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    prediction: Prediction = "v"

    def __post_init__(self) -> None:
        _check_widths("unet", self.width, self.mults, self.blocks_per_level)
        if self.prediction not in ("eps", "v"):
            raise ConfigError(f"unet: prediction must be 'eps' or 'v', got {self.prediction!r}")


@dataclass(frozen=True, kw_only=True)
class StudentConfig:
    """Compact single-pass network distilled from the BSGD sampler (the ``fast`` mode).

    norm: "group" normalises by each tile's own statistics (GroupNorm); "affine" is a learnt per-channel
    scale and shift instead, which inference folds into the convolutions (:mod:`bsgd_cli.nets.folded`);
    "mixed" is affine at full resolution and GroupNorm at the coarser levels.
    """

    width: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    norm: StudentNorm = "group"

    def __post_init__(self) -> None:
        _check_widths("student", self.width, self.mults, self.blocks_per_level)
        if self.norm not in STUDENT_NORMS:
            raise ConfigError(f"student: norm must be one of {', '.join(STUDENT_NORMS)}, got {self.norm!r}")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Continuous-time noise schedule on t in [0, 1]; ``kind`` names never change meaning."""

    kind: Literal["cosine", "linear"] = "cosine"

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "linear"):
            raise ConfigError(f"schedule: kind must be 'cosine' or 'linear', got {self.kind!r}")


@dataclass(frozen=True, kw_only=True)
class WienerConfig:
    """The Wiener refinement (:mod:`bsgd_cli.engine.wiener`): a DCT-domain empirical Wiener filter in
    opponent colour planes, with the noise measured on each image.

    passes: Wiener passes (each result is the next pilot); noise_scale: multiplies the measured noise
    power; chroma_scale: a further factor on an RGB image's two colour planes; patch/stride: block
    side and step in pixels (chroma_patch/chroma_stride: the same for the colour planes); opponent:
    False filters R, G and B as they are, each with patch/stride (kept for ablations). sure_factor:
    the calibration factor of the no-reference choice of noise_scale for this model's pilot
    (:mod:`bsgd_cli.engine.wiener_choice`; it depends on how much noise the pilot keeps).
    mode_noise_scale: noise_scale for the modes named in it, whose pilots keep more (or less) noise
    than the one noise_scale was chosen for (e.g. ``{"bsgd": 4.0, "bsn": 8.0}``); other modes use
    noise_scale. :meth:`for_mode` resolves it; a scale the user gives replaces both.
    """

    passes: int = 1
    noise_scale: float = 3.0
    chroma_scale: float = 6.0
    patch: int = 16
    stride: int = 4
    chroma_patch: int = 32
    chroma_stride: int = 8
    opponent: bool = True
    sure_factor: float = 8.0
    mode_noise_scale: dict[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        checks.WIENER_PASSES.check("Wiener passes", self.passes)
        if not isinstance(self.mode_noise_scale, dict):
            raise ConfigError(f"mode_noise_scale must map modes to scales, got {self.mode_noise_scale!r}")
        for mode, scale in self.mode_noise_scale.items():
            if mode not in MODES:
                raise ConfigError(f"mode_noise_scale: unknown mode {mode!r}; choose among {', '.join(MODES)}")
            checks.WIENER_NOISE.check(f"the Wiener noise scale of mode {mode}", scale)
        object.__setattr__(self, "mode_noise_scale", {mode: float(s) for mode, s in self.mode_noise_scale.items()})
        checks.WIENER_NOISE.check("the Wiener strength choice's calibration factor", self.sure_factor)
        checks.WIENER_NOISE.check("the Wiener noise scale", self.noise_scale)
        checks.WIENER_NOISE.check("the Wiener colour noise scale", self.chroma_scale)
        for patch, stride in ((self.patch, self.stride), (self.chroma_patch, self.chroma_stride)):
            if not 2 <= patch <= 64 or not 1 <= stride <= patch:
                raise ConfigError(
                    f"Wiener block sides must lie in 2..64 and their strides in 1..side, got {patch} and {stride}"
                )

    def for_mode(self, mode: str) -> WienerConfig:
        """These settings as ``mode`` runs them: its own noise scale where one is stored, and no map left."""
        return self.with_noise_scale(self.mode_noise_scale.get(mode, self.noise_scale))

    def with_noise_scale(self, scale: float) -> WienerConfig:
        """These settings with one noise scale for every mode (a scale the user or a choice gave)."""
        return dataclasses.replace(self, noise_scale=scale, mode_noise_scale={})


LEGACY_WIENER_KEYS = {
    "wiener_passes": "passes", "wiener_noise": "noise_scale", "wiener_chroma": "chroma_scale",
    "wiener_patch": "patch", "wiener_stride": "stride", "wiener_chroma_patch": "chroma_patch",
    "wiener_chroma_stride": "chroma_stride",
}
"""Flat keys of model files written before the Wiener settings were nested, and their new names."""


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Settings of :func:`bsgd_cli.diffusion.sampling.sample_bsgd` and the baseline modes.

    guidance: w in ``x0 = x_c + w (x_b - x_c)``; 1 is the blind-spot branch alone, 0 the diffusion
    branch alone, > 1 extrapolates. steps: K DDIM steps from ``t_start`` to 0. runs: R averaged runs.
    replace_prob: p, the probability a pixel/channel is re-injected from the noisy input per step.
    refine: "wiener" runs :mod:`bsgd_cli.engine.wiener` on the mode's output (the pilot) with the
    settings in ``wiener`` (:class:`WienerConfig`); "none" returns the pilot.
    bsn_fusion: the ``bsn`` mode gives each pixel back its own noisy value where the blind spot's
    prediction cannot explain it (:mod:`bsgd_cli.engine.fusion`): the local residual
    power over a ``bsn_fusion_window`` square around the pixel (the pixel left out) against
    ``bsn_fusion_scale`` times the image's median of it (the noise).
    strength: the result is ``strength * denoised + (1 - strength) * noisy`` (1 = fully denoised).
    t_start_noise: above 0, the ``bsgd`` mode starts each image later where its measured noise is
    strong: at the diffusion time whose noise-to-signal ratio is ``t_start_noise`` times the image's
    noise (its standard deviation in model units, measured on the student's or blind-spot branch's
    output), never before ``t_start`` and at most :data:`T_START_CAP` (:mod:`bsgd_cli.engine.start`).
    0 starts every image at ``t_start``.
    """

    # Defaults for newly trained models: the measured best of docs/BENCHMARKS.md (second ablation).
    mode: Mode = "bsgd"
    guidance: float = 0.5
    steps: int = 2
    t_start: float = 0.05
    runs: int = 2
    replace_prob: float = 0.16
    mask: MaskKind = "iid"
    r3_runs: int = 8
    r3_prob: float = 0.16
    bsn_fusion: bool = True
    bsn_fusion_window: int = 7
    bsn_fusion_scale: float = 1.5
    refine: Refine = "wiener"
    wiener: WienerConfig = field(default_factory=WienerConfig)
    strength: float = 1.0
    t_start_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        checks.GUIDANCE.check("guidance", self.guidance)
        checks.STEPS.check("steps", self.steps)
        checks.RUNS.check("runs", self.runs)
        checks.RUNS.check("r3_runs", self.r3_runs)
        checks.T_START.check("t_start", self.t_start)
        checks.T_START_NOISE.check("t_start_noise", self.t_start_noise)
        checks.STRENGTH.check("strength", self.strength)
        checks.PROBABILITY.check("replace_prob", self.replace_prob)
        checks.PROBABILITY.check("r3_prob", self.r3_prob)
        checks.FUSION_WINDOW.check("bsn_fusion_window", self.bsn_fusion_window)
        checks.FUSION_SCALE.check("bsn_fusion_scale", self.bsn_fusion_scale)
        if self.bsn_fusion_window % 2 == 0:
            raise ConfigError(f"bsn_fusion_window must be odd, got {self.bsn_fusion_window}")
        if self.refine not in REFINES:
            raise ConfigError(f"refine must be 'none' or 'wiener', got {self.refine!r}")
        if not isinstance(self.wiener, WienerConfig):
            raise ConfigError(f"wiener must be a WienerConfig, got {type(self.wiener).__name__}")
        if self.mask not in ("iid", "complementary"):
            raise ConfigError(f"mask must be 'iid' or 'complementary', got {self.mask!r}")


@dataclass(frozen=True, kw_only=True)
class SamplerOverrides:
    """Changes to a model's stored sampler defaults, as a user asks for them (None keeps the stored value).

    Kept apart from the :class:`SamplerConfig` they change because the model is not known yet where
    they are parsed (the command line), and one batch may use two models (a RAW-domain model and the
    sRGB model for files without a Bayer mosaic). ``wiener_noise`` is the Wiener step's noise scale.
    """

    mode: Mode | None = None
    steps: int | None = None
    guidance: float | None = None
    runs: int | None = None
    t_start: float | None = None
    strength: float | None = None
    refine: Refine | None = None
    wiener_noise: float | None = None

    def apply(self, base: SamplerConfig) -> SamplerConfig:
        """``base`` with these changes (checked like any SamplerConfig)."""
        wiener = (
            base.wiener
            if self.wiener_noise is None
            else base.wiener.with_noise_scale(self.wiener_noise)
        )
        fixed_start = None if self.t_start is None else 0.0  # a start asked for is used for every image
        return replace(base, mode=self.mode, steps=self.steps, guidance=self.guidance, runs=self.runs,
                       t_start=self.t_start, t_start_noise=fixed_start, strength=self.strength, refine=self.refine,
                       wiener=wiener)


@dataclass(frozen=True, kw_only=True)
class TilingConfig:
    """Tile side and overlap in pixels, and how many tiles go through the networks at once.

    On out-of-memory the engine halves ``tile`` and retries (down to 64 pixels).
    """

    tile: int = 512
    overlap: int = 32
    batch: int = 1

    def __post_init__(self) -> None:
        checks.TILE.check("--tile", self.tile)
        checks.OVERLAP.check("--overlap", self.overlap)
        checks.TILE_BATCH.check("--batch", self.batch)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything needed to rebuild a model: both branches, the schedule, optional student."""

    blind_spot: BlindSpotConfig = field(default_factory=BlindSpotConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    student: StudentConfig | None = None
    domain: Domain = "srgb"
    channels: int = 3

    def __post_init__(self) -> None:
        if self.domain not in ("srgb", "raw") or self.channels not in (3, 4):
            raise ConfigError(
                f"domain {self.domain!r} with {self.channels!r} channels: expected srgb or raw, 3 or 4 channels"
            )

    def with_pd_strides(self, pd_train: int | None = None, pd_infer: int | None = None) -> ModelConfig:
        """This config with the blind-spot branch's PD strides replaced where given (None keeps them)."""
        strides = {key: value for key, value in (("pd_train", pd_train), ("pd_infer", pd_infer)) if value is not None}
        return replace(self, blind_spot=replace(self.blind_spot, **strides)) if strides else self


UNCAPPED_STEPS = 10_000_000
"""A step count only a time budget ends (``--minutes`` without ``--steps``)."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A training run. ``branch`` selects what is optimised; patch must be a multiple of the PD stride.

    t_max: both branches are trained on t in [0, t_max] (the sampler starts at t_start <= t_max);
    t_zero_prob: share of blind-spot samples at t = 0 exactly (plain AP-BSN training).
    photometric: random darkening and channel order (see :func:`bsgd_cli.training.data.photometric`).
    channels_last: keep weights and batches in NHWC memory order (faster convolutions on tensor-core
    GPUs; the same numbers up to float rounding).
    prefetch: cut this many batches ahead in a background thread (0: none), so the CPU's work
    overlaps the GPU's; the same batches either way.
    """

    steps: int = 2000
    batch: int = 8
    patch: int = 120
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 1.0
    ema: float = 0.999
    t_zero_prob: float = 0.3
    t_max: float = 0.5
    photometric: bool = True
    bsn_loss: Literal["l1", "l2"] = "l1"
    branch: Branch = "both"
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 25
    val_every: int = 250
    val_fraction: float = 0.05
    cache_megabytes: int = 2048
    precision: Precision = "fp32"
    channels_last: bool = False
    prefetch: int = 0


T = TypeVar("T")

_NESTED: dict[str, type] = {
    "blind_spot": BlindSpotConfig,
    "unet": UNetConfig,
    "schedule": ScheduleConfig,
    "student": StudentConfig,
    "wiener": WienerConfig,
}


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild ``cls`` from :func:`to_dict` output; unknown keys raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    if cls is SamplerConfig:
        data = _nest_legacy_wiener(data)
    data = _drop_retired(cls, data)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown fields {', '.join(unknown)}; the file was made by a newer bsgd, upgrade bsgd"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        nested = _NESTED.get(name)
        if nested is not None and value is not None:
            value = from_dict(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


RETIRED_KEYS: dict[str, dict[str, Any]] = {
    # An experimental learned-variance head for the bsn mode, replaced by fuse_blind_spot (docs/LEARNING.md):
    # files saved without the head (False) load as before; one with the head is refused as unknown.
    "BlindSpotConfig": {"variance": False},
    "SamplerConfig": {"bsn_noise_quantile": None},  # its setting; any value is dropped
}
"""Keys that files of this development line may hold and that no longer mean anything, with the one
value that may be dropped silently (None: any)."""


def _drop_retired(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    retired = RETIRED_KEYS.get(cls.__name__, {})
    return {key: value for key, value in data.items()
            if key not in retired or (retired[key] is not None and value != retired[key])}


def _nest_legacy_wiener(data: dict[str, Any]) -> dict[str, Any]:
    """A stored sampler with the flat ``wiener_*`` keys of older model files moved into ``wiener``."""
    legacy = {key: value for key, value in data.items() if key in LEGACY_WIENER_KEYS}
    if not legacy:
        return data
    nested = data.get("wiener") or {}
    if not isinstance(nested, dict):
        raise ConfigError(f"SamplerConfig: wiener must be a mapping, got {type(nested).__name__}")
    moved = {LEGACY_WIENER_KEYS[key]: value for key, value in legacy.items()}
    rest = {key: value for key, value in data.items() if key not in LEGACY_WIENER_KEYS}
    return {**rest, "wiener": {**moved, **nested}}


def replace(config: T, **changes: Any) -> T:
    """``dataclasses.replace`` that skips ``None`` values (handy for CLI overrides)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]


PRESETS: dict[PresetName, ModelConfig] = {
    # Trains at a useful rate on 2 CPU cores (the README has the rate).
    "small": ModelConfig(
        blind_spot=BlindSpotConfig(width=32, mults=(1, 1, 2), head_width=64),
        unet=UNetConfig(width=32, mults=(1, 2, 2)),
    ),
    # AP-BSN-scale widths (about 3-4 M parameters per branch), for GPUs.
    "paper": ModelConfig(
        blind_spot=BlindSpotConfig(width=64, mults=(1, 2, 2, 4), blocks_per_level=2, head_width=128),
        unet=UNetConfig(width=64, mults=(1, 2, 2, 4), blocks_per_level=2),
    ),
    # For short GPU slots (docs/GPU.md): a wider, deeper blind-spot branch (the weaker one) and a
    # deeper diffusion branch. Sized by the slot's file limits, not yet by a measured rate: its
    # compact state must come back in one 16 MiB file and stay small enough to commit (docs/NOTES.md).
    # Patch sides: multiples of 20 (PD stride 5, then 4).
    "gpu": ModelConfig(
        blind_spot=BlindSpotConfig(width=48, mults=(1, 1, 2), blocks_per_level=2, head_width=96),
        unet=UNetConfig(width=32, mults=(1, 2, 2), blocks_per_level=2),
    ),
    # For tests: seconds on a CPU.
    "tiny": ModelConfig(
        blind_spot=BlindSpotConfig(width=8, mults=(1, 1), head_width=8),
        unet=UNetConfig(width=8, mults=(1, 1)),
    ),
}
assert set(PRESETS) == set(get_args(PresetName)), "PresetName names every preset"
