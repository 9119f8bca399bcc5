"""Where and how the networks run: the device (auto, CPU, CUDA, MPS) and the float precision.

Resolved once, at the entry point (:func:`check_runtime` refuses an absent device or a precision the
device cannot run before any work starts); the engine then only asks :func:`autocast_context`.

bf16 is used only where the hardware computes it natively (:func:`native_bf16`): on an x86 CPU that
means AVX512 (BW, VL, DQ) or AVX-NE-CONVERT. Many laptop and server CPUs have only AVX2; there oneDNN
emulates bf16 many times slower than fp32 (docs/NOTES.md, "bf16 without AVX512"), and its fused
convolutions refuse it outright, so "auto" resolves to fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import cast

import torch

from ..config import Precision
from ..errors import ConfigError
from .threads import configure_torch_threads

_DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple MPS, then the CPU; a clear error for an absent or unknown device."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown device {str(device)!r}; use {_DEVICE_FORMS}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for, but no CUDA GPU is visible; use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0; "
                "use cuda:0 or auto"
            )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for, but MPS is not available; use --device cpu or auto")
    return torch.device(name)


def _check_name(precision: str, names: tuple[str, ...]) -> None:
    if precision not in names:
        raise ConfigError(f"precision must be {', '.join(names[:-1])} or {names[-1]}, got {precision!r}")


@functools.cache
def _cpu_bf16() -> bool:
    try:  # oneDNN's own test: AVX512 BW/VL/DQ or AVX-NE-CONVERT on x86, the BF16 extension on Arm
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (and so faster than fp32): a CUDA GPU that supports it,
    a CPU with the instructions oneDNN needs. Elsewhere bf16 is emulated or not available."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _cpu_bf16()
    return False


def check_runtime(device: str | torch.device, precision: str) -> torch.device:
    """The device a run will use, refusing before any work a device that is absent or unknown and a
    precision the device cannot run (fp16 on a CPU, bf16 on a CPU without native bf16)."""
    torch_device = resolve_device(device)
    _check_name(precision, ("auto", "fp32", "bf16", "fp16"))
    if precision == "fp16" and torch_device.type == "cpu":
        raise ConfigError("--precision fp16 is not supported on the CPU; use --precision auto or fp32")
    if precision == "bf16" and torch_device.type == "cpu" and not native_bf16(torch_device):
        raise ConfigError(
            "--precision bf16: this CPU has no native bf16 (it needs AVX512 or AVX-NE-CONVERT), so bf16 would "
            "run many times slower than fp32 here; use --precision auto or fp32"
        )
    return torch_device


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast where the device computes it natively, else a no-op (fp32): a stored default of
    bf16 (a training recipe's) runs in fp32 on a CPU without native bf16 (module docstring)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    _check_name(precision, ("fp32", "bf16", "fp16"))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and dtype == torch.float16:
        raise ConfigError("fp16 is not supported on the CPU; use --precision auto or fp32")
    if device.type == "cpu" and not native_bf16(device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


BF16_MODES = ("fast", "bsn", "bsgd", "bsn-r3")
"""Modes whose "auto" precision is bf16: measured to keep their PSNR on the tuning split (docs/NOTES.md)."""


def resolve_precision(precision: str, mode: str, device: torch.device) -> str:
    """"auto": bf16 for the modes in :data:`BF16_MODES` (all of them) on a CPU or CUDA GPU that computes
    it natively (faster at the same PSNR, docs/NOTES.md); fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if mode in BF16_MODES and device.type in ("cpu", "cuda") and native_bf16(device) else "fp32"


def training_precision(precision: str, device: torch.device) -> Precision:
    """A training run's precision: "auto" is bf16 where ``device`` computes it natively (much faster than
    fp32 on a CPU that does), else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    _check_name(precision, ("auto", "fp32", "bf16", "fp16"))
    return cast(Precision, precision)


@dataclass(frozen=True)
class Runtime:
    """Where and how the networks run: made once, at the entry point, by :func:`resolve_runtime`.

    precision: "auto", "fp32", "bf16" or "fp16"; "auto" depends on the mode (:meth:`precision_for`).
    """

    device: torch.device
    precision: str = "auto"

    def precision_for(self, mode: str) -> str:
        """The precision a ``mode`` runs in (see :func:`resolve_precision`)."""
        return resolve_precision(self.precision, mode, self.device)


def resolve_runtime(device: str | torch.device = "auto", precision: str = "auto") -> Runtime:
    """A :class:`Runtime`, refusing an absent or unknown device and a precision it cannot run
    (see :func:`check_runtime`) before any work starts. Caps torch's threads at the CPUs this process
    may use (:func:`~bsgd_cli.engine.threads.configure_torch_threads`)."""
    runtime = Runtime(check_runtime(device, precision), precision)
    configure_torch_threads()
    return runtime
