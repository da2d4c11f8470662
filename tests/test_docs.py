"""README.md and docs/*.md stay true to the code: every `python -m pipeline.<verb>` (or
`srgan-<verb>`) command line they show names a module that exists and uses only options its
parser has, README stays a front door of at most 250 lines, and every relative link leads to
a file (and heading) that exists."""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------------------------------------
# Markdown: code snippets (fenced blocks and inline code) and the prose around them

FENCE = re.compile(r"^\s*(```|~~~)")
# An inline code span: a run of backticks, anything but a blank line, the same run again.
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)


def split_fences(text: str) -> tuple[list[tuple[int, str]], str]:
    """(the lines inside fenced code blocks as (line number, line)), and the text outside
    them with every fenced line blanked, so that line numbers stay right."""
    fenced, prose, inside = [], [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            prose.append("")
        elif inside:
            fenced.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    return fenced, "\n".join(prose)


def join_continuations(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Shell lines ending in a backslash joined with the next, numbered by their first line."""
    logical, start, parts = [], None, []
    for number, line in lines:
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        logical.append((start, " ".join(parts)))
        start, parts = None, []
    if parts:
        logical.append((start, " ".join(parts)))
    return logical


def code_snippets(text: str) -> list[tuple[int, str]]:
    """Every logical line of a fenced block and every inline code span, with its line number."""
    fenced, prose = split_fences(text)
    snippets = join_continuations(fenced)
    for match in INLINE_CODE.finditer(prose):
        number = prose.count("\n", 0, match.start()) + 1
        body = match.group(2).replace("\\\n", " ").replace("\n", " ")
        snippets.append((number, body))
    return snippets


# ---------------------------------------------------------------------------------------------
# Commands in the snippets


@functools.cache
def console_scripts() -> dict[str, str]:
    """Console script name -> the module its entry point lives in, from pyproject.toml's
    [project.scripts] (read by hand: tomllib is Python 3.11+, the project supports 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    entries = re.findall(
        r'^\s*"?([\w.-]+)"?\s*=\s*"([\w.]+):[\w.]+"', section.group(1) if section else "", re.MULTILINE
    )
    return {name: module for name, module in entries}


# `python -m pipeline.x.y` anywhere (any interpreter path before it); `srgan-<verb>` at the start
# of a command; a bare `pipeline.<verb> --flag` at the start of a snippet.
PYTHON_M = re.compile(r"(?<![\w-])(?:[\w./-]*/)?python3?\s+-m\s+(pipeline(?:\.\w+)+)(?![\w.])")
SCRIPT = re.compile(r"(?:^|(?<=[\s(]))(srgan-[a-z]+)(?=\s|$)")
BARE = re.compile(r"^\s*(pipeline\.[a-z_]+)(?=\s+--)")
PLACEHOLDER = re.compile(r"<[^<>]*>")
COMMENT = re.compile(r"(^|\s)#.*$")
ENDS_A_COMMAND = {"|", "||", "&&", "&", ";", ">", ">>", "2>", "2>&1", "<"}
FLAG = re.compile(r"--[A-Za-z0-9][\w-]*")


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    module: str  # the module whose parser must know the flags
    shown_as: str  # how the page names it: `python -m pipeline.train`, `srgan-train`, ...
    flags: tuple[str, ...]


def flags_of(rest: str) -> tuple[str, ...]:
    """The `--flag`s of one command's arguments (up to the end of the command), with
    placeholders (`<file>`, `<id of a run>`) and `[optional]` brackets ignored and `--flag=value`
    read as `--flag`."""
    rest = PLACEHOLDER.sub("_", rest)
    try:
        tokens = shlex.split(rest, posix=True)
    except ValueError:  # an unbalanced quote in prose: whitespace is good enough
        tokens = rest.split()
    found = []
    for token in tokens:
        if token in ENDS_A_COMMAND or token.startswith("#"):
            break
        if token == "--":  # the end of options: what follows belongs to the command, not the verb
            break
        bare = token.lstrip("[(")
        match = FLAG.match(bare)
        if match:
            found.append(match.group(0))
    return tuple(found)


def commands_in(path: Path) -> list[Command]:
    found = []
    for number, snippet in code_snippets(path.read_text()):
        snippet = COMMENT.sub("", snippet)
        starts = []
        for match in PYTHON_M.finditer(snippet):
            starts.append((match.start(), match.end(), match.group(1), f"python -m {match.group(1)}"))
        for match in SCRIPT.finditer(snippet):
            if match.group(1) in console_scripts():
                starts.append((match.start(), match.end(), console_scripts()[match.group(1)], match.group(1)))
        match = BARE.match(snippet)
        if match and not starts:
            starts.append((match.start(), match.end(), match.group(1), match.group(1)))
        starts.sort()
        for i, (_, end, module, shown_as) in enumerate(starts):
            stop = starts[i + 1][0] if i + 1 < len(starts) else len(snippet)
            found.append(Command(rel(path), number, module, shown_as, flags_of(snippet[end:stop])))
    return found


def documented_commands() -> list[Command]:
    return [command for path in doc_files() for command in commands_in(path)]


# ---------------------------------------------------------------------------------------------
# The verbs' parsers


@dataclass(frozen=True)
class Options:
    options: frozenset[str] | None  # None: the module has no build_parser() to read them from
    problem: str | None = None  # why the module cannot be checked at all (missing, no parser)


@functools.cache
def options_of(module_name: str) -> Options:
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return Options(None, f"no module {module_name}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return Options(None, f"cannot import {module_name}: {exc}")
    build = getattr(module, "build_parser", None)
    if build is None:
        return Options(None)
    parser = build()
    if not isinstance(parser, argparse.ArgumentParser):
        return Options(None, f"{module_name}.build_parser() returned {type(parser).__name__}, not an argparse parser")
    return Options(frozenset(option for action in parser._actions for option in action.option_strings))


# ---------------------------------------------------------------------------------------------
# The tests


def test_the_docs_show_commands_at_all():
    """Guards the extraction itself: the pages show the main verbs' commands."""
    shown = {command.module for command in documented_commands()}
    for verb in ("train", "tune", "promote", "upscale", "evaluate", "rate", "prepare", "export", "register"):
        assert f"pipeline.{verb}" in shown, f"no `python -m pipeline.{verb} ...` command found in README.md or docs/"


def test_every_documented_flag_exists_in_its_verbs_parser():
    bad = []
    for command in documented_commands():
        options = options_of(command.module)
        where = f"{command.file}:{command.line}: `{command.shown_as}`"
        if options.problem:
            bad.append(f"{where}: {options.problem}")
            continue
        if options.options is None:
            continue  # no parser to check against: named by the test below
        for flag in command.flags:
            if flag not in options.options:
                known = ", ".join(sorted(o for o in options.options if o.startswith("--")))
                bad.append(f"{where}: {flag} is not an option (it has {known})")
    assert not bad, "documented command lines that the CLI would refuse:\n" + "\n".join(bad)


def test_documented_modules_without_a_parser_are_named():
    """A documented `python -m pipeline.<module>` whose module has only main() (no
    build_parser()) cannot have its flags checked; say which, rather than pass silently."""
    unchecked = sorted(
        {
            f"{command.file}:{command.line}: {command.module}"
            for command in documented_commands()
            if options_of(command.module).options is None and not options_of(command.module).problem
        }
    )
    if unchecked:
        pytest.skip(
            "flags not checked: these modules have no build_parser() to read their options from: "
            + "; ".join(unchecked)
        )


def test_readme_is_a_front_door():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move the detail to a page under docs/"
    )


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    missing = [rel(path) for path in sorted((ROOT / "docs").glob("*.md")) if f"({rel(path)}" not in readme]
    assert not missing, f"README.md links no {', '.join(missing)}"


# `[text](target)` and `![alt](target "title")`, and reference definitions `[name]: target`.
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def prose_of(text: str) -> str:
    """The text outside fenced blocks and inline code (links inside code are not links)."""
    _, prose = split_fences(text)
    return INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)  # keeps line numbers


@functools.cache
def anchors_of(path: Path) -> frozenset[str]:
    """The heading anchors GitHub makes for a Markdown file (lower case, punctuation dropped,
    spaces to hyphens; repeats get -1, -2, ...)."""
    _, prose = split_fences(path.read_text())
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(prose):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return frozenset(anchors)


def test_every_relative_link_points_to_a_file_that_exists():
    bad = []
    for path in doc_files():
        prose = prose_of(path.read_text())
        links = [(m.start(), m.group(1)) for m in INLINE_LINK.finditer(prose)]
        links += [(m.start(), m.group(1)) for m in REFERENCE_LINK.finditer(prose)]
        for offset, target in links:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, ...
                continue
            where = f"{rel(path)}:{prose.count(chr(10), 0, offset) + 1}: {target}"
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                bad.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
                bad.append(f"{where}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not bad, "links that lead nowhere:\n" + "\n".join(bad)
