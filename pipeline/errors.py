"""The pipeline's user-facing errors: one base (srgan.errors.UserError) and a class per kind of
bad input. A CLI prints such an error as one line, `error: <message>`, and exits 2 (see
pipeline.cli); any other exception is a bug and keeps its traceback. A library function's
message names a setting by its parameter name in backticks (`overwrite`), never a flag, and
says which names those are (`param=`); the verb's main shows them as its flags (--overwrite)
through pipeline.cli.naming_flags."""

from __future__ import annotations

from pipeline.formats.errors import DecodeError  # owned by the codecs, which import nothing else of pipeline
from srgan.errors import UserError

__all__ = [
    "UserError",
    "PipelineError",
    "UsageError",
    "ConfigError",
    "StorageError",
    "DecodeError",
    "RangeError",
    "DataError",
    "ModelRefError",
    "TrackingError",
]


class PipelineError(UserError):
    """A user error of the pipeline; `params` are the parameter names its message writes in
    backticks (`overwrite`), which a CLI shows as its flags."""

    def __init__(self, message: str = "", *, param: str | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param)


class UsageError(PipelineError):
    """A command line that cannot run: a bad option value, a missing or conflicting option."""


class ConfigError(PipelineError):
    """A configuration file or override that cannot be used; the message names the key."""


class StorageError(PipelineError):
    """A path that cannot be listed, read or written; the message names it."""


class RangeError(DecodeError):
    """A file a model cannot read under its own data_range: its dtype cannot hold that range."""


class DataError(PipelineError):
    """Data that cannot serve as a whole: no usable images, images too small for the job."""


class ModelRefError(PipelineError):
    """A model reference that names nothing loadable."""


class TrackingError(PipelineError):
    """An MLflow tracking server that does not answer, or a run or model it does not hold."""
