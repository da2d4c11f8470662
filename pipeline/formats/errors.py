"""The one error the codecs raise: a file that cannot be read as an image. It subclasses
srgan's UserError, so a CLI prints it in one line; pipeline.errors hands it on."""

from __future__ import annotations

from srgan.errors import UserError


class DecodeError(UserError):
    """A file that is empty, truncated, not an image, or of an unsupported layout."""
