"""What every `python -m pipeline.<verb>` shares: a parser whose errors are one line and whose
help shows every default and ends with examples, the wrapper that turns a user error into
`error: <message>` and exit code 2 (a bug keeps its traceback and exits 1), and a log file that
takes everything a long command prints but its own progress lines (LogFile)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

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


class _Both(io.TextIOBase):
    """A text stream that writes to two."""

    def __init__(self, first: TextIO, second: TextIO) -> None:
        self.streams = (first, second)

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


class LogFile:
    """While open, whatever this process prints goes to the file `path` (appended to): its
    stdout and stderr at the level of file descriptors 1 and 2, so also what child processes
    and Ray (its own logging, and its workers' output, which Ray prints in the driver) write
    there. `say` prints a line of the command's own to the terminal and to the log, `note`
    the same but only the first time, `showing()` lets a verb's printed report through. An
    exception leaving the block restores the terminal first, so its message reaches it, after
    a line naming the log."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._notes: set[str] = set()
        self._saved: list[tuple[int, int]] = []
        self._swapped: tuple[TextIO, TextIO] | None = None

    def __enter__(self) -> LogFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        sys.stdout.flush()
        sys.stderr.flush()
        self.out, self.err = self._terminal(sys.stdout, 1), self._terminal(sys.stderr, 2)
        if not (_on_fd(sys.stdout, 1) and _on_fd(sys.stderr, 2)):  # e.g. pytest's capsys: no descriptors
            self._swapped = (sys.stdout, sys.stderr)
            sys.stdout = sys.stderr = self._log
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # a process started without that descriptor
                self._saved.append((fd, os.dup(fd)))
                os.dup2(self._log.fileno(), fd)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved:
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = []
        if self._swapped:
            sys.stdout, sys.stderr = self._swapped
            self._swapped = None
        if exc_type is not None:
            self.say(f"stopped; the whole output, Ray's included, is in {self.path}", error=True)
        for stream in (self.out, self.err):
            if stream not in (sys.stdout, sys.stderr):
                stream.close()
        self._log.close()

    @staticmethod
    def _terminal(stream: TextIO, fd: int) -> TextIO:
        """Where `stream` (stdout or stderr) goes now: a copy of its descriptor, which the
        redirection leaves alone, or the stream itself when it has none."""
        if not _on_fd(stream, fd):
            return stream
        return open(os.dup(fd), "w", buffering=1, encoding=stream.encoding, errors="replace")  # noqa: SIM115

    def say(self, text: str = "", error: bool = False) -> None:
        """`text` on the terminal (stderr with `error`) and in the log."""
        sys.stdout.flush()  # what was printed before goes into the log before this line
        sys.stderr.flush()
        for stream in ((self.err if error else self.out), self._log):
            if not stream.closed:
                print(text, file=stream, flush=True)

    def note(self, text: str) -> None:
        """`say`, once: a note repeated later is not shown again."""
        if text not in self._notes:
            self._notes.add(text)
            self.say(text)

    @contextlib.contextmanager
    def showing(self) -> Iterator[None]:
        """Within: sys.stdout prints to the terminal and the log, for a verb's own report (a
        table); stderr (notes, progress bars) still goes to the log only."""
        saved = sys.stdout
        sys.stdout.flush()
        sys.stdout = _Both(self.out, self._log)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stdout = saved


def _on_fd(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


def flag_names(parser: argparse.ArgumentParser, **flags: str) -> dict[str, str]:
    """Parameter name -> this command's flag: the option of `parser` with that dest, else `flags[name]`."""
    named = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}
    named.update(flags)
    return named


def with_flags(text: str, named: dict[str, str], params: tuple[str, ...] | None = None) -> str:
    """`text` with each parameter it writes in backticks (`overwrite`) shown as its flag from
    `named` (--overwrite); a name with no flag loses its backticks. `params`: the names the
    message's raiser stated; None (messages of code that states none, manifest rows): every
    identifier in backticks."""
    if params is not None:
        for name in params:
            text = text.replace(f"`{name}`", named.get(name, name))
        return text
    parts = text.split("`")
    for i in range(1, len(parts) - 1, 2):  # the odd parts sit between two backticks
        name = parts[i]
        parts[i] = named.get(name, name) if name.isidentifier() else f"`{name}`"
    if len(parts) % 2 == 0:  # a backtick without its pair stays
        parts[-1] = "`" + parts[-1]
    return "".join(parts)


@contextlib.contextmanager
def naming_flags(parser: argparse.ArgumentParser, **flags: str) -> Iterator[None]:
    """Within: a UserError of the library, which writes a setting as its parameter name in
    backticks (`overwrite`) and names those parameters in its `params`, is raised again as a
    UsageError that shows this command's flag instead (--overwrite; see `flag_names`). An
    error that states no `params` (DecodeError, srgan's) has every backticked identifier shown so."""
    named = flag_names(parser, **flags)
    try:
        yield
    except UserError as exc:
        text = one_line(exc)
        shown = with_flags(text, named, getattr(exc, "params", None) or None)
        if shown == text:
            raise
        raise UsageError(shown) from exc
