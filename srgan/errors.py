"""The one base class for errors a user can fix: a bad setting, path, file, weight source or
model reference. Its message is one line that names the bad value and the fix. The package
raises it (or a subclass) for bad input only; anything else is a bug."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, reported in one line that names the value and the fix (CLIs exit 2)."""
