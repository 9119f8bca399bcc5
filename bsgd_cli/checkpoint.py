"""Model files: safetensors weights with the config, sampler defaults and provenance as metadata.

One file rebuilds its model. Loading parses the safetensors header and tensors only; nothing is
ever unpickled. Training state (optimizer, step, RNG) lives in a separate file read with
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import ModelConfig, SamplerConfig, from_dict, to_dict
from .errors import BsgdError, ModelFileError
from .model import BsgdModel

FORMAT = "bsgd-model"
FORMAT_VERSION = 1
EMBEDDED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "default"


@dataclass
class LoadedModel:
    """A model ready for inference, with the sampler defaults measured for it and its provenance."""

    model: BsgdModel
    sampler: SamplerConfig
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""


def user_model_dir() -> Path:
    """Where ``bsgd models`` looks for user models: $BSGD_MODEL_DIR or ~/.local/share/bsgd/models."""
    return Path(os.environ.get("BSGD_MODEL_DIR", Path.home() / ".local" / "share" / "bsgd" / "models"))


def resolve_model_path(path_or_name: str | Path | None) -> Path:
    """A file path, a name of an embedded or user model, or None for the embedded default."""
    name = str(path_or_name) if path_or_name is not None else DEFAULT_MODEL
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate
    for folder in (EMBEDDED_DIR, user_model_dir()):
        named = folder / f"{name}.safetensors"
        if named.is_file():
            return named
    if candidate.is_dir() and (candidate / "model.safetensors").is_file():
        return candidate / "model.safetensors"
    raise ModelFileError(
        f"model {name!r} not found: give the path of a .safetensors file made by 'bsgd train', "
        f"or a name listed by 'bsgd models'"
    )


def save_model(
    path: Path,
    model: BsgdModel,
    *,
    sampler: SamplerConfig | None = None,
    info: dict[str, Any] | None = None,
) -> None:
    """Write weights and metadata atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save_file

    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "bsgd_version": __version__,
        "config": json.dumps(to_dict(model.config)),
        "sampler": json.dumps(to_dict(sampler or SamplerConfig())),
        "info": json.dumps(info or {}),
    }
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ModelFileError(f"{path}: cannot write the model file ({exc.strerror}); check the folder") from exc


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors JSON header without loading tensors; a clear error for other files."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"{path}: too short to be a model file; it may be truncated")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(size - 8, 100_000_000):
                raise ModelFileError(
                    f"{path}: not a safetensors model file (pickled .pt/.pth files are refused); "
                    "use a file made by 'bsgd train'"
                )
            header = json.loads(handle.read(header_len))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: unreadable or not a safetensors model file ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: malformed safetensors header")
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise ModelFileError(f"{path}: the file is truncated; download or copy it again")
    return header


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: Path) -> dict[str, Any]:
    """The decoded metadata of a bsgd model file (config, sampler, info, versions)."""
    header = _read_header(Path(path))
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a bsgd model (no bsgd metadata)")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: made by bsgd {metadata.get('bsgd_version', '?')} (model format {version}); "
            f"this bsgd {__version__} reads format {FORMAT_VERSION}: upgrade bsgd"
        )
    try:
        return {
            "config": json.loads(metadata["config"]),
            "sampler": json.loads(metadata.get("sampler", "{}")),
            "info": json.loads(metadata.get("info", "{}")),
            "bsgd_version": metadata.get("bsgd_version", "?"),
        }
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: bsgd metadata is damaged ({exc})") from exc


def load_model(path_or_name: str | Path | None = None, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model from one file (see :func:`resolve_model_path`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(path_or_name)
    meta = read_metadata(path)
    try:
        config = from_dict(ModelConfig, meta["config"])
        sampler = from_dict(SamplerConfig, meta["sampler"])
    except BsgdError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    model = BsgdModel(config)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"{path}: cannot read the weights ({exc}); the file may be damaged") from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ModelFileError(f"{path}: weights do not match the stored config ({' '.join(first)})") from exc
    model.eval().to(device)
    return LoadedModel(model=model, sampler=sampler, info=meta["info"], path=path, sha256=file_sha256(path))
