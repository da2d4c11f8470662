"""The one exception every decoder raises for a file it cannot read."""


class DecodeError(ValueError):
    """A file is empty, truncated, not an image, or of an unsupported layout."""
