"""The pipeline's user-facing errors: one base (srgan.errors.UserError) and a class per kind of
bad input. A CLI prints such an error as one line, `error: <message>`, and exits 2 (see
pipeline.cli); any other exception is a bug and keeps its traceback. A library function's
message names a setting by its parameter name in backticks (`overwrite`), never a flag; the
verb's main shows it as the flag (--overwrite) through pipeline.cli.naming_flags."""

from __future__ import annotations

from pipeline.formats.errors import DecodeError  # owned by the codecs, which import nothing else of pipeline
from srgan.errors import UserError

__all__ = [
    "UserError",
    "UsageError",
    "ConfigError",
    "StorageError",
    "DecodeError",
    "DataError",
    "ModelRefError",
    "TrackingError",
]


class UsageError(UserError):
    """A command line that cannot run: a bad option value, a missing or conflicting option."""


class ConfigError(UserError):
    """A configuration file or override that cannot be used; the message names the key."""


class StorageError(UserError):
    """A path that cannot be listed, read or written; the message names it."""


class DataError(UserError):
    """Data that cannot serve as a whole: no usable images, images too small for the job."""


class ModelRefError(UserError):
    """A model reference that names nothing loadable."""


class TrackingError(UserError):
    """An MLflow tracking server that does not answer, or a run or model it does not hold."""
