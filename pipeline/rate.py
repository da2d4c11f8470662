"""Blind A/B rating, the mean-opinion side of evaluation: a self-contained page shows crops of
two models' upscales side by side in hidden order, and the choices raters export from it are
counted into a preference share with a 95% confidence interval.

    python -m pipeline.rate --a <model reference> --b <model reference> --data <folder> [--out rating.html]
    python -m pipeline.rate --results choices-*.json [--key rating.key.json] [--json]
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import cli, tracking
from pipeline.data.reader import StoredImage
from pipeline.errors import DataError, StorageError, TrackingError, UsageError
from pipeline.io import storage
from pipeline.models.reference import BICUBIC, REFERENCE_HELP, Upscaler, load_upscaler
from pipeline.scoring.grids import to_display
from pipeline.scoring.protocol import iter_images, list_images
from srgan.generator import SCALES
from srgan.resize import imresize

PAGE_FORMAT, KEY_FORMAT = "srgan-rate/1", "srgan-rate-key/1"
CHOICES = ("left", "right", "none")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
EXAMPLES = [
    "python -m pipeline.rate --a bicubic --b models:/srgan@champion --data ../shared/data/Set5 --out set5.html",
    "python -m pipeline.rate --a runs:/<run id> --b models:/srgan@champion --data s3://bucket/holdout/ --crop 96 --pairs-per-image 3",
    "python -m pipeline.rate --results choices-ann-*.json choices-bob-*.json --key set5.key.json",
]


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a binomial share `successes / n` (None when n is 0).

    Wilson rather than the textbook normal (Wald) interval because a rating session is small
    and one-sided results are common: Wald's interval has zero width at 0 of n or n of n and
    spills past [0, 1], and its coverage falls well below 95% for tens of judgements; Wilson's
    stays inside [0, 1] and keeps close to its nominal coverage there (Newcombe 1998)."""
    if n == 0:
        return None
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class RatingPage:
    page: Path
    key: Path
    pairs: int


def key_path(page: str | Path) -> Path:
    """Where the key to `page` goes: rating.html -> rating.key.json beside it."""
    return Path(page).with_suffix(".key.json")


def make_page(
    a: str,
    b: str,
    data: str,
    out: str | Path = "rating.html",
    *,
    crop: int = 128,
    pairs_per_image: int = 2,
    seed: int = 0,
    scale: int | None = None,
    tracking_uri: str | None = None,
) -> RatingPage:
    """Write the rating page for models `a` and `b` (any model references, or 'bicubic') on the
    HR images under `data`, and its key beside it (see key_path).

    Each image gives `pairs_per_image` random crops of `crop` HR pixels (smaller images: all
    of them); its LR is made as scoring makes it (MATLAB bicubic in the image's own dtype) and
    both models upscale that crop. The seed draws the crops, the pairs' order and the sides,
    half of the pairs showing A on the left; the page holds only a random token per pair, and
    which side is A is in the key alone."""
    files = list_images(data)  # before the models are fetched: a bad folder fails fast
    out = Path(out)
    storage.check_writable(str(out), "`out`")
    storage.check_writable(str(key_path(out)), "`out`")  # its key goes beside it
    upscalers = _upscalers(a, b, scale, tracking_uri)
    rng = np.random.default_rng(seed)
    reader = next((u for u in upscalers if u.generator is not None), upscalers[0])  # its bands and data_range
    crops = [
        c
        for name, image in iter_images(files, reader)
        for c in _crops(name, image, upscalers, crop, pairs_per_image, rng)
    ]
    sides = rng.permutation(["a", "b"] * (len(crops) // 2) + ["a"] * (len(crops) % 2)).tolist()
    page_id, pairs, keyed = secrets.token_hex(8), [], {}
    for i, side in zip(rng.permutation(len(crops)).tolist(), sides):
        name, box, lr, sr_a, sr_b = crops[i]
        token = secrets.token_hex(6)  # random, not seeded: it must tell nothing about the side
        left, right = (sr_a, sr_b) if side == "a" else (sr_b, sr_a)
        pairs.append({"token": token, "lr": _png(lr), "left": _png(left), "right": _png(right)})
        keyed[token] = {"image": name, "box_top_left_size": box, "left": side}
    key = {
        "format": KEY_FORMAT,
        "page_id": page_id,
        "page": out.name,
        "a": a,
        "b": b,
        "runs": {"a": _source_run(a, tracking_uri), "b": _source_run(b, tracking_uri)},
        "scale": upscalers[0].scale,
        "data": data,
        "crop": crop,
        "seed": seed,
        "pairs": keyed,
    }
    shown = {"format": PAGE_FORMAT, "page_id": page_id, "key_file": key_path(out).name, "pairs": pairs}
    _write_whole(out, render_page(shown))
    _write_whole(key_path(out), json.dumps(key, indent=1) + "\n")
    return RatingPage(page=out, key=key_path(out), pairs=len(pairs))


def _write_whole(path: Path, text: str) -> None:
    """Write `path` by a temporary file beside it and a rename: it appears whole or not at all."""
    partial = path.with_name(f".{path.name}.partial")
    with storage.reporting_write(path, "`out`"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)


# Inside <script>, `<!--` and `<script` change how the HTML parser looks for the closing tag, and
# U+2028/9 end a line in older JavaScript: none of them may appear raw in the embedded JSON.
_SCRIPT_SAFE = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def script_json(data: object) -> str:
    """`data` as JSON that is inert inside an HTML <script> element (and still the same JSON)."""
    return json.dumps(data).translate(_SCRIPT_SAFE)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_page(shown: dict) -> str:
    """The rating page holding `shown`. Its CSP lets run only the page's own inline script and
    style, by their sha256 (no 'unsafe-inline'): markup that got in some other way stays inert."""
    template = resources.files("pipeline").joinpath("rate_page.html").read_text(encoding="utf-8")
    script = re.search(r"<script>(.*?)</script>", template, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", template, re.S).group(1)
    page = template.replace("{{SCRIPT_HASH}}", _csp_hash(script)).replace("{{STYLE_HASH}}", _csp_hash(style))
    return page.replace("{{DATA}}", script_json(shown))


def _upscalers(a: str, b: str, scale: int | None, tracking_uri: str | None) -> tuple[Upscaler, Upscaler]:
    """A's and B's upscalers; bicubic takes the other model's scale when `scale` is not given."""
    loaded = {ref: load_upscaler(ref, scale=scale, tracking_uri=tracking_uri) for ref in (a, b) if ref != BICUBIC}
    if BICUBIC in (a, b):
        model_scale = scale or next((u.scale for u in loaded.values()), None)
        if model_scale is None:
            raise UsageError("bicubic against bicubic needs `scale`", param="scale")
        loaded[BICUBIC] = load_upscaler(BICUBIC, scale=model_scale)
    up_a, up_b = loaded[a], loaded[b]
    if up_a.scale != up_b.scale:
        raise UsageError(
            f"`a` {a} upscales x{up_a.scale} but `b` {b} x{up_b.scale}; compare models of one scale", param=("a", "b")
        )
    if None not in (up_a.in_channels, up_b.in_channels) and up_a.in_channels != up_b.in_channels:
        raise UsageError(
            f"`a` {a} takes {up_a.in_channels}-band images but `b` {b} {up_b.in_channels}-band ones; compare models of one band count",
            param=("a", "b"),
        )
    return up_a, up_b


def _crops(
    name: str,
    image: StoredImage,
    upscalers: tuple[Upscaler, Upscaler],
    crop: int,
    count: int,
    rng: np.random.Generator,
) -> Iterator[tuple]:
    """(image name, [top, left, size] in HR pixels, LR crop, A's crop, B's crop) `count` times;
    tensors (C, h, w) in [0, 1]."""
    array = image.pixels  # alpha dropped, in the models' band count (iter_images)
    scale = upscalers[0].scale
    h, w = array.shape[0] // scale, array.shape[1] // scale
    side = min(crop // scale, h, w)  # in LR pixels
    if side < 4:
        raise DataError(
            f"{name}: {array.shape[1]}x{array.shape[0]} is too small to crop at x{scale} (at least {4 * scale} px a side); remove it or raise `crop`",
            param="crop",
        )
    hr = torch.from_numpy(np.ascontiguousarray(array[: h * scale, : w * scale].transpose(2, 0, 1)))[None]
    lr = ((imresize(hr, 1.0 / scale).float() - image.range.low) / image.range.span).clamp(0, 1)
    for _ in range(count):
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        region = (top, top + side, left, left + side)
        yield (
            name,
            [top * scale, left * scale, side * scale],
            lr[0, :, top : top + side, left : left + side],
            *(u(lr, region)[0] for u in upscalers),
        )


def _png(x: torch.Tensor) -> str:
    buffer = io.BytesIO()
    Image.fromarray(to_display(x)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _source_run(ref: str, tracking_uri: str | None) -> str | None:
    """The MLflow run behind a model reference: runs:/<id> itself, a registry version's run,
    a logged model's source run; None for files and bicubic. Resolved when the page is made,
    so that an alias that moves later does not move the ratings with it."""
    if ref.startswith("runs:/"):
        return ref[len("runs:/") :].strip("/").split("/")[0]
    if not ref.startswith("models:/"):
        return None
    return tracking.model_run(tracking.resolve_tracking_uri(tracking_uri), ref)


class _Schema(BaseModel):
    """A file the page or make_page wrote: strict types, unknown fields ignored (a newer page may add some)."""

    model_config = ConfigDict(extra="ignore", strict=True)


Text = Annotated[str, Field(min_length=1, max_length=1000)]


class KeyPair(_Schema):
    left: Literal["a", "b"]  # which model the page shows on the left


class RatingKey(_Schema):
    format: Literal[KEY_FORMAT]
    page_id: Text
    a: Text
    b: Text
    runs: dict[Literal["a", "b"], str | None] = {}
    pairs: dict[Text, KeyPair] = Field(min_length=1)


class Choice(_Schema):
    pair: Text
    choice: Literal["left", "right", "none"]
    at: Text  # the page's ISO time: orders a rater's choices, and tells copies apart from agreement
    seconds: float | None = None


class ChoicesExport(_Schema):
    format: Literal[PAGE_FORMAT]
    page_id: Text
    key_file: str | None = None
    rater: str | None = None
    session: Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")] | None = None  # random, per browser
    choices: list[Choice]


def _parse(schema: type[_Schema], data: object, source: str, fix: str) -> _Schema:
    """`data` checked against `schema`; a DataError naming `source` and the first bad field otherwise."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".") or "(top)"
        found = "" if first["type"] == "missing" else f" (found {json.dumps(first['input'], default=str)[:40]})"
        more = f" and {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
        raise DataError(f'{source}: field "{where}": {first["msg"]}{found}{more}; {fix}') from None


@dataclass
class RatingResult:
    """Judgements decoded with the key. A tie ('no preference') says neither model looked
    better: it is no evidence for either, so ties are left out of the shares and their n (as
    in the sign test) and counted apart; a pair judged by several raters counts once a rater.
    `dropped` counts the choices not counted, by reason; `merged` says which files were
    counted as one rater, and why."""

    a: str
    b: str
    page_id: str
    wins_a: int = 0
    wins_b: int = 0
    ties: int = 0
    left_chosen: int = 0  # position bias check: near half of the decided judgements
    pairs: set = field(default_factory=set)
    raters: list = field(default_factory=list)
    runs: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)
    merged: list = field(default_factory=list)

    def to_dict(self) -> dict:
        decided = self.wins_a + self.wins_b

        def share(k: int) -> float | None:
            return None if decided == 0 else k / decided

        return {
            "a": self.a,
            "b": self.b,
            "page_id": self.page_id,
            "preference_b": share(self.wins_b),
            "preference_b_ci95": wilson_interval(self.wins_b, decided),
            "preference_a": share(self.wins_a),
            "preference_a_ci95": wilson_interval(self.wins_a, decided),
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
            "judgements": decided + self.ties,
            "pairs": len(self.pairs),
            "raters": len(self.raters),
            "rater_names": list(self.raters),
            "left_share": share(self.left_chosen),
            "dropped": dict(self.dropped),
            "merged": list(self.merged),
        }


REPLACED = "replaced by the same rater's later choice on that pair"
REPEATED = "the same choice again (one rater's file given twice, or a copy of it)"


def count_choices(key: dict | RatingKey, exports: list[tuple[str, dict | ChoicesExport]]) -> RatingResult:
    """Decode the exported choices `(source name, export)` with the page's key. Files that share
    a session id, a rater name or the very same timestamped choices are one rater, counted once;
    a rater's later choice on a pair replaces an earlier one (an export made midway, then the final one)."""
    fix = "export the file again from the page"
    key = key if isinstance(key, RatingKey) else _parse(RatingKey, key, "key", "give the .key.json beside the page")
    exports = [(s, e if isinstance(e, ChoicesExport) else _parse(ChoicesExport, e, s, fix)) for s, e in exports]
    for source, export in exports:
        if export.page_id != key.page_id:
            raise DataError(
                f"{source} holds choices for page {export.page_id!r}, but the key is for page {key.page_id!r}; give the key written beside that page (`key`)",
                param="key",
            )
        foreign = next((c for c in export.choices if c.pair not in key.pairs), None)
        if foreign is not None:
            raise DataError(f"{source}: pair {foreign.pair[:40]!r} is not a choice on this key's page; {fix}")
    result = RatingResult(a=key.a, b=key.b, page_id=key.page_id, runs=dict(key.runs))
    dropped: dict[str, int] = {}
    for group, reasons in _same_raters(exports):
        sources = [exports[i][0] for i in group]
        names = sorted({exports[i][1].rater for i in group if exports[i][1].rater}) or [sources[0]]
        if len(group) > 1:
            result.merged.append(f"{', '.join(sources)}: one rater ({' and '.join(reasons)}), counted once")
        latest: dict[str, Choice] = {}
        for choice in (c for i in group for c in exports[i][1].choices):
            previous = latest.get(choice.pair)
            if previous is not None:
                same = (choice.choice, choice.at) == (previous.choice, previous.at)
                reason = REPEATED if same else REPLACED
                dropped[reason] = dropped.get(reason, 0) + 1
                if same or choice.at < previous.at:
                    continue
            latest[choice.pair] = choice
        if latest:
            result.raters.append(" / ".join(names))
        for token, choice in latest.items():
            result.pairs.add(token)
            if choice.choice == "none":
                result.ties += 1
                continue
            shown_left = key.pairs[token].left
            winner = shown_left if choice.choice == "left" else {"a": "b", "b": "a"}[shown_left]
            result.wins_a += winner == "a"
            result.wins_b += winner == "b"
            result.left_chosen += choice.choice == "left"
    result.dropped = dropped
    return result


def _same_raters(exports: list[tuple[str, ChoicesExport]]) -> list[tuple[list[int], list[str]]]:
    """The exports' indices grouped by rater, with what tied each group's files together: one
    session id (the page draws one per browser), one rater name, or the same set of
    timestamped choices (a copy: two people do not choose the same pairs at the same instants)."""
    parent = list(range(len(exports)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: dict[tuple, int] = {}
    joined_by: dict[int, set[str]] = {}
    for i, (_, export) in enumerate(exports):
        marks = {
            "the same session id": export.session,
            "the same name": export.rater or None,
            "the same choices at the same times": frozenset((c.pair, c.choice, c.at) for c in export.choices) or None,
        }
        for why, mark in marks.items():
            if mark is None:
                continue
            j = first.setdefault((why, mark), i)
            if j != i:
                a, b = root(j), root(i)
                if a != b:
                    parent[b] = a
                    joined_by[a] = joined_by.get(a, set()) | joined_by.pop(b, set())
                joined_by.setdefault(a, set()).add(why)
    groups: dict[int, list[int]] = {}
    for i in range(len(exports)):
        groups.setdefault(root(i), []).append(i)
    return [(members, sorted(joined_by.get(r, set()))) for r, members in groups.items()]


def _read_json(path: str | Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StorageError(f"{what} {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path} is not a JSON object; give the file the rating page wrote")
    return data


def rate_results(results: list[str | Path], key: str | Path | None = None) -> RatingResult:
    """Count the choices in the exported `results` files with the page's key (default: the
    key file the page names, beside the first results file or in the working directory).
    Each file is checked against the page's export schema and the key against the key's."""
    exports = []
    for path in results:
        data = _read_json(path, "results file")
        if data.get("format") != PAGE_FORMAT:
            raise DataError(f"{path} is not a choices file exported from a rating page (format {PAGE_FORMAT})")
        exports.append(
            (str(path), _parse(ChoicesExport, data, f"results file {path}", "export it again from the page"))
        )
    if key is None:
        name = Path(exports[0][1].key_file or "rating.key.json").name
        found = [p for p in (Path(results[0]).parent / name, Path(name)) if p.is_file()]
        if not found:
            raise UsageError(
                f"no key {name} beside {results[0]} or in the working directory; give `key` <page>.key.json",
                param="key",
            )
        key = found[0]
    key_data = _read_json(key, "key")
    if key_data.get("format") != KEY_FORMAT:
        raise DataError(
            f"{key} is not a rating page's key (format {KEY_FORMAT}); give the .key.json written beside the page"
        )
    fix = "give the .key.json make_page wrote beside the page, unedited"
    result = count_choices(_parse(RatingKey, key_data, f"key {key}", fix), exports)
    if not result.pairs:
        raise DataError(f"no choices in {', '.join(map(str, results))}; rate some pairs, then export again")
    return result


def log_to_runs(result: RatingResult, tracking_uri: str | None = None) -> list[str]:
    """Log the result on the MLflow run behind each model, from that run's side: metrics
    rate/preferred (its share of decided judgements) with its 95% interval, rate/judgements,
    rate/ties, rate/pairs, rate/raters, and the whole report as rate/<page id>.json. Returns
    lines saying where it went."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    report = result.to_dict()
    runs = {side: run for side, run in result.runs.items() if run}
    without = [getattr(result, side) for side in ("a", "b") if side not in runs]
    notes = [f"not logged for {' and '.join(without)}: no MLflow run behind it (a file or bicubic)"] if without else []
    if not runs:
        return notes
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_reachable(uri, must_exist=True)
    c, now = tracking.client(uri), int(time.time() * 1000)
    for side, run_id in runs.items():
        own, ci = report[f"preference_{side}"], report[f"preference_{side}_ci95"] or (None, None)
        values = {
            "rate/preferred": own,
            "rate/preferred_low": ci[0],
            "rate/preferred_high": ci[1],
            **{f"rate/{k}": report[k] for k in ("judgements", "ties", "pairs", "raters")},
        }
        try:
            c.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items() if v is not None])
            c.log_dict(run_id, {**report, "this_run": side}, f"rate/{result.page_id}.json")
        except MlflowException as exc:
            raise TrackingError(
                f"cannot log the rating on run {run_id} ({getattr(result, side)}) at {tracking.display_uri(uri)}: {cli.one_line(exc)}"
            ) from exc
        notes.append(f"logged on run {run_id} ({side}: {getattr(result, side)})")
    return notes


def print_table(result: RatingResult) -> None:
    r = result.to_dict()
    print(
        f"A: {r['a']}\nB: {r['b']}\n{r['pairs']} pairs, {r['raters']} rater(s), {r['judgements']} judgement(s), {r['ties']} with no preference (left out of the shares)"
    )
    print(f"raters counted: {', '.join(r['rater_names'])}")
    print(f"{'preferred':<10}  {'share':>5}  {'95% CI (Wilson)':<15}  count")
    for side, other in (("b", "a"), ("a", "b")):
        share, ci = r[f"preference_{side}"], r[f"preference_{side}_ci95"]
        cells = ("-", "-") if share is None else (f"{share:.3f}", f"{ci[0]:.3f} - {ci[1]:.3f}")
        print(
            f"{side.upper() + ' over ' + other.upper():<10}  {cells[0]:>5}  {cells[1]:<15}  {r['wins_' + side]} of {r['wins_a'] + r['wins_b']}"
        )


def notes(result: RatingResult) -> list[str]:
    """Lines on what was not counted as given: files merged into one rater, choices dropped and why."""
    lines = [f"merged: {line}" for line in result.merged]
    return lines + [f"dropped {n} choice(s): {why}" for why, n in result.dropped.items()]


def build_parser() -> cli.Parser:
    p = cli.Parser(
        "python -m pipeline.rate",
        "Blind A/B rating: write a self-contained page comparing two models' upscales, then count the choices raters export from it.",
        EXAMPLES,
    )
    p.add_argument("--a", help=f"model A: {REFERENCE_HELP}")
    p.add_argument("--b", help="model B, the same kinds of reference")
    p.add_argument("--data", help="HR images: a local folder or an s3:// prefix (searched recursively)")
    p.add_argument("--out", default="rating.html", help="the page to write; its key goes beside it as <name>.key.json")
    p.add_argument(
        "--crop", type=cli.positive_int, default=128, help="crop side in HR pixels (rounded down to the scale)"
    )
    p.add_argument("--pairs-per-image", type=cli.positive_int, default=2, help="random crops per image")
    p.add_argument(
        "--seed", type=cli.non_negative_int, default=0, help="draws the crops, their order and the hidden sides"
    )
    p.add_argument(
        "--scale",
        type=int,
        choices=SCALES,
        help="upscaling factor; required for bicubic against bicubic (default: the model's)",
    )
    p.add_argument(
        "--results",
        nargs="+",
        metavar="CHOICES_JSON",
        help="count these exported choices files instead of making a page",
    )
    p.add_argument(
        "--key",
        help="with --results: the page's key (default: the key the page names, beside the first results file or here)",
    )
    p.add_argument(
        "--no-log", action="store_true", help="with --results: do not log the result on the models' MLflow runs"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    return p


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli.naming_flags(parser):
        page_options = [f"--{k}" for k in ("a", "b", "data") if getattr(args, k)]
        if args.results:
            if page_options:
                raise UsageError(
                    f"--results counts choices; {', '.join(page_options)} make a page: give one or the other"
                )
            result = rate_results(args.results, args.key)
            logged = [] if args.no_log else log_to_runs(result, args.tracking_uri)
            if args.json:
                print(json.dumps(result.to_dict()))
            else:
                print_table(result)
            for note in notes(result) + logged:
                print(note, file=sys.stderr if args.json else sys.stdout)
            return 0
        if len(page_options) < 3:
            raise UsageError("give --a, --b and --data to make a rating page, or --results to count exported choices")
        page = make_page(
            args.a,
            args.b,
            args.data,
            args.out,
            crop=args.crop,
            pairs_per_image=args.pairs_per_image,
            seed=args.seed,
            scale=args.scale,
            tracking_uri=args.tracking_uri,
        )
        if args.json:
            print(json.dumps({"page": str(page.page), "key": str(page.key), "pairs": page.pairs}))
        else:
            print(
                f"rating page: {page.page} ({page.pairs} pairs; sides hidden)\nkey: {page.key} (keep it from the raters; --results needs it)"
            )
        return 0


if __name__ == "__main__":
    sys.exit(main())
