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


class ModelFileError(BsgdError):
    """A model file is missing, not a bsgd safetensors file, or incompatible."""


class DatasetError(BsgdError):
    """A benchmark or training data set is missing, empty, or has the wrong layout."""


class TrainingError(BsgdError):
    """Training cannot start or continue (bad folder, bad resume state)."""
