"""Model files: safetensors weights with the config, sampler defaults and provenance as metadata.

One file rebuilds its model. Loading parses the safetensors header and tensors only; nothing is
ever unpickled. Training state (optimizer, step, RNG) lives in a separate file read with
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .config import ModelConfig, SamplerConfig, from_dict, to_dict
from .engine.model import BsgdModel, LoadedModel
from .errors import BsgdError, ModelFileError
from .io.imagedata import special_kind

FORMAT = "bsgd-model"
FORMAT_VERSION = 1
EMBEDDED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "default"


def user_model_dir() -> Path:
    """Where ``bsgd models`` looks for user models: $BSGD_MODEL_DIR or ~/.local/share/bsgd/models."""
    return Path(os.environ.get("BSGD_MODEL_DIR", Path.home() / ".local" / "share" / "bsgd" / "models"))


def _model_folder_error(folder: Path) -> ModelFileError:
    inside = sorted(p.name for p in folder.glob("*.safetensors") if p.is_file())[:3]
    hint = (
        f"give one of the model files in it ({', '.join(inside)})" if inside else "it holds no .safetensors model file"
    )
    return ModelFileError(f"{folder}: is a folder, not a model file; {hint}")


def resolve_model_path(path_or_name: str | Path | None) -> Path:
    """A file path, a name of an embedded or user model, or None for the embedded default.

    A folder stands for its ``model.safetensors`` (a ``bsgd train`` run); a folder without one, a
    named pipe, a device or a broken link is refused with what it is, and never opened.
    """
    name = str(path_or_name) if path_or_name is not None else DEFAULT_MODEL
    candidate = Path(name).expanduser()
    try:
        mode: int | None = os.stat(candidate).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISREG(mode):
        return candidate
    for folder in (EMBEDDED_DIR, user_model_dir()):
        named = folder / f"{name}.safetensors"
        if named.is_file():
            return named
    if mode is not None and stat.S_ISDIR(mode):
        if (candidate / "model.safetensors").is_file():
            return candidate / "model.safetensors"
        raise _model_folder_error(candidate)
    if mode is not None:
        raise ModelFileError(
            f"{candidate}: {special_kind(mode) or 'not a regular file'}, not a model file; give a .safetensors file"
        )
    if candidate.is_symlink():
        raise ModelFileError(f"{candidate}: broken symbolic link; fix the link or give the model file itself")
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
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "bsgd_version": __version__,
        "config": json.dumps(to_dict(model.config)),
        "sampler": json.dumps(to_dict(sampler or SamplerConfig())),
        "info": json.dumps(info or {}),
    }
    tensors = {
        name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in model.state_dict().items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ModelFileError(f"{path}: cannot write the model file ({exc.strerror}); check the folder") from exc


_DTYPES = {"F32", "F16", "BF16"}


def _check_entries(path: Path, header: dict[str, Any]) -> None:
    """Every tensor entry has a float dtype, a shape of whole numbers and byte offsets that fit it."""
    for key, entry in header.items():
        if key == "__metadata__":
            if entry is not None and not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise ModelFileError(
                    f"{path}: malformed safetensors header (metadata is not text); the file is damaged"
                )
            continue
        if not _entry_ok(entry):
            raise ModelFileError(
                f"{path}: malformed safetensors header (tensor {key!r}); the file is damaged or not a bsgd model"
            )


def _entry_ok(entry: Any) -> bool:
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        return False
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(n, int) for n in offsets):
        return False
    size = 4 if entry["dtype"] == "F32" else 2
    return 0 <= offsets[0] <= offsets[1] and offsets[1] - offsets[0] == size * math.prod(shape)


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors JSON header without loading tensors; a clear error for other files."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else special_kind(info.st_mode) or "not a regular file"
            raise ModelFileError(f"{path}: {what}, not a model file; give a .safetensors file")
        size = info.st_size
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: unreadable or not a safetensors model file ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: malformed safetensors header")
    _check_entries(path, header)
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


def _json_object(path: Path, metadata: dict[str, str], key: str, default: str) -> dict[str, Any]:
    try:
        value = json.loads(metadata.get(key, default))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: bsgd metadata is damaged ({key}: {exc})") from exc
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: bsgd metadata is damaged ({key} is a {type(value).__name__}, not an object)")
    return value


def read_metadata(path: Path) -> dict[str, Any]:
    """The decoded metadata of a bsgd model file (config, sampler, info, versions)."""
    return _metadata(Path(path), _read_header(Path(path)))


def _metadata(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a bsgd model (no bsgd metadata)")
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
        raise ModelFileError(
            f"{path}: bsgd metadata is damaged (format_version {metadata['format_version']!r})"
        ) from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: made by bsgd {metadata.get('bsgd_version', '?')} (model format {version}); "
            f"this bsgd {__version__} reads format {FORMAT_VERSION}: upgrade bsgd"
        )
    if "config" not in metadata:
        raise ModelFileError(f"{path}: bsgd metadata is damaged (no config)")
    return {
        "config": _json_object(path, metadata, "config", "{}"),
        "sampler": _json_object(path, metadata, "sampler", "{}"),
        "info": _json_object(path, metadata, "info", "{}"),
        "bsgd_version": metadata.get("bsgd_version", "?"),
    }


def _check_shapes(path: Path, header: dict[str, Any], config: ModelConfig) -> None:
    """The stored tensors are exactly those the config's network has, with the same shapes.

    Checked against a skeleton on the meta device (no memory), so a config that asks for absurd
    widths is refused here instead of failing to allocate while the network is built.
    """
    try:
        with torch.device("meta"):
            skeleton = BsgdModel(config)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise ModelFileError(f"{path}: the stored config cannot build a network ({exc}); the file is damaged") from exc
    expected = {name: list(tensor.shape) for name, tensor in skeleton.state_dict().items()}
    stored = {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    wrong = [name for name in sorted(set(expected) & set(stored)) if expected[name] != stored[name]]
    if missing or unexpected or wrong:
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape"
                  + (f", e.g. {wrong[0]}: file {stored[wrong[0]]}, config {expected[wrong[0]]}" if wrong else "")
                  + (f", e.g. missing {missing[0]}" if missing and not wrong else ""))
        raise ModelFileError(f"{path}: weights do not match the stored config ({detail})")


def load_model(path_or_name: str | Path | None = None, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model from one file (see :func:`resolve_model_path`)."""
    path = resolve_model_path(path_or_name)
    header = _read_header(path)
    meta = _metadata(path, header)
    try:
        config = from_dict(ModelConfig, meta["config"])
        sampler = from_dict(SamplerConfig, meta["sampler"])
    except BsgdError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    _check_shapes(path, header, config)
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
