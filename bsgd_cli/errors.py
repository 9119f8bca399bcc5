"""Errors raised by the bsgd library.

Every message names what failed and what the user can do about it. The CLI catches
:class:`BsgdError` at its boundary and prints the message as one line, with no traceback.
"""

from __future__ import annotations


class BsgdError(Exception):
    """Base class for every error bsgd raises on purpose."""

    exit_code = 2


class ConfigError(BsgdError):
    """A configuration value is out of range or inconsistent."""


class ImageReadError(BsgdError):
    """An input image cannot be decoded (corrupt, truncated, unsupported, too large)."""


class ImageWriteError(BsgdError):
    """An output image cannot be written (permissions, disk full, unsupported format)."""


class DenoiseError(BsgdError):
    """Denoising one image went wrong in a way that is not the file's fault (non-finite output)."""


class ModelFileError(BsgdError):
    """A model file is missing, not a bsgd safetensors file, or incompatible."""


class DatasetError(BsgdError):
    """A benchmark or training data set is missing, empty, or has the wrong layout."""


class TrainingError(BsgdError):
    """Training cannot start or continue (bad folder, bad resume state)."""


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal: Ctrl-C (SIGINT, number 2) or SIGTERM (15, what ``timeout``, ``docker
    stop`` and systemd send). A KeyboardInterrupt, so every clean-up written for Ctrl-C runs for both."""

    def __init__(self, signum: int = 2) -> None:
        super().__init__(signum)
        self.signum = signum


class BatchInterrupted(Interrupted):
    """A batch stopped by a signal after finishing the writes in flight. ``results`` holds what was
    done (one result per finished file), ``total`` the number of files the batch had."""

    def __init__(self, signum: int, results: list, total: int) -> None:
        super().__init__(signum)
        self.results = results
        self.total = total
