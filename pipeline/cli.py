"""What every `python -m pipeline.<verb>` shares: a parser whose errors are one line and whose
help shows every default and ends with examples, and the wrapper that turns a user error into
`error: <message>` and exit code 2 (a bug keeps its traceback and exits 1)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from pipeline.errors import UsageError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _with_default(kwargs: dict) -> dict:
    """add_argument's keywords with the option's default (or 'required') added to its help."""
    text = kwargs.get("help") or ""
    if "(default" in text or argparse.SUPPRESS in (kwargs.get("help"), kwargs.get("default")):
        return kwargs
    if kwargs.get("required"):
        suffix = "(required)"
    elif kwargs.get("action") in ("store_true", "store_false"):
        suffix = f"(default: {'off' if kwargs['action'] == 'store_true' else 'on'})"
    elif kwargs.get("default") in (None, []):
        suffix = "(default: none)"
    else:
        suffix = f"(default: {kwargs['default']})"
    return {**kwargs, "help": f"{text} {suffix}".strip()}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised as UsageError), every option's default in its
    help, and examples after the options."""

    def __init__(self, prog: str, description: str, examples: list[str], **kwargs) -> None:
        epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
        super().__init__(
            prog=prog,
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )

    def add_argument(self, *args, **kwargs):
        return super().add_argument(*args, **_with_default(kwargs))

    def add_mutually_exclusive_group(self, **kwargs):
        group = super().add_mutually_exclusive_group(**kwargs)
        add = group.add_argument
        group.add_argument = lambda *args, **kw: add(*args, **_with_default(kw))
        return group

    def error(self, message: str):  # argparse calls this for every bad command line
        raise UsageError(f"{message} (see {self.prog} --help)")


def _whole_number(text: str, low: int, meaning: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is too small: {meaning}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    return _whole_number(text, 1, "give 1 or more")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    return _whole_number(text, 0, "give 0 or more")


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def print_first(lines: list[str], shown: int = 20) -> None:
    """Print the first `shown` of `lines` to stderr, then how many more the manifest holds."""
    for line in lines[:shown]:
        print(f"  {line}", file=sys.stderr)
    if len(lines) > shown:
        print(f"  ... and {len(lines) - shown} more (see the manifest)", file=sys.stderr)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a message should be one already; this is the net)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a verb's `main(argv) -> exit code`: a UserError becomes `error: <message>` on
    stderr and exit 2, Ctrl-C exit 130, `--help` exit 0; any other exception propagates
    (a traceback, exit 1)."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except SystemExit as exc:  # --help prints and exits 0
            if exc.code is None or isinstance(exc.code, int):
                return exc.code or 0
            print(exc.code, file=sys.stderr)
            return 1

    return run
