"""The rating verb against files and names made to mislead it (issue 24, points 1 and 2): a
rating file is checked before it is trusted and a copied rater counts once; the page stays
inert whatever the file, folder and page names hold, in a real headless Chromium."""

import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.rate import key_path, main, make_page
from tests.pipeline.test_rate import _chromium

FOUR = {"t1": "a", "t2": "b", "t3": "a", "t4": "b"}  # token -> the model shown on the left


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _key(tmp_path: Path, **changes) -> Path:
    key = {
        "format": "srgan-rate-key/1",
        "page_id": "p1",
        "a": "bicubic",
        "b": "g.pt",
        "runs": {"a": None, "b": None},
        "pairs": {t: {"image": "x.png", "left": side} for t, side in FOUR.items()},
        **changes,
    }
    path = tmp_path / "rating.key.json"
    path.write_text(json.dumps({k: v for k, v in key.items() if v is not None}))
    return path


def _choices(tmp_path: Path, name: str, rater: str | None, picks: dict, *, second: int = 0, **extra) -> Path:
    """An export as the page writes it; `picks` maps a token to left / right / none."""
    export = {
        "format": "srgan-rate/1",
        "page_id": "p1",
        "key_file": "rating.key.json",
        "rater": rater,
        "choices": [
            {"pair": t, "choice": c, "at": f"2026-01-01T00:00:{second + i:02d}.000Z", "seconds": 1.5}
            for i, (t, c) in enumerate(picks.items())
        ],
        **extra,
    }
    path = tmp_path / name
    path.write_text(json.dumps(export))
    return path


PREFER_B = {t: "left" if side == "b" else "right" for t, side in FOUR.items()}


def test_a_key_whose_side_was_edited_is_refused_with_file_and_field(tmp_path, capsys):
    key = _key(tmp_path, pairs={**{t: {"left": s} for t, s in FOUR.items()}, "t1": {"left": "c"}})
    results = _choices(tmp_path, "ann.json", "ann", PREFER_B)
    code, out, err = _run(capsys, "--results", str(results), "--key", str(key), "--no-log")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert str(key) in err and '"pairs.t1.left"' in err


def test_a_key_without_page_id_is_refused_with_file_and_field(tmp_path, capsys):
    key = _key(tmp_path, page_id=None)
    code, _, err = _run(capsys, "--results", str(_choices(tmp_path, "ann.json", "ann", PREFER_B)), "--key", str(key))
    assert code == 2 and str(key) in err and '"page_id"' in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "choice, field",
    [
        ({"pair": [1], "choice": "left", "at": "1"}, '"choices[0].pair"'),
        ({"pair": {"t": 1}, "choice": "left", "at": "1"}, '"choices[0].pair"'),
        ({"pair": "t1", "choice": "up", "at": "1"}, '"choices[0].choice"'),
        ({"pair": "t1", "choice": "left"}, '"choices[0].at"'),
        ({"pair": "t1", "choice": "left", "at": "1", "seconds": "slow"}, '"choices[0].seconds"'),
        ("t1", '"choices[0]"'),
    ],
)
def test_a_malformed_choice_is_refused_with_file_and_field(tmp_path, capsys, choice, field):
    key = _key(tmp_path)
    results = _choices(tmp_path, "ann.json", "ann", PREFER_B)
    export = json.loads(results.read_text())
    export["choices"].insert(0, choice)
    results.write_text(json.dumps(export))
    code, _, err = _run(capsys, "--results", str(results), "--key", str(key), "--no-log")
    assert code == 2 and str(results) in err and field in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "change, field",
    [({"rater": 7}, '"rater"'), ({"session": "not hex!"}, '"session"'), ({"page_id": ""}, '"page_id"')],
)
def test_a_malformed_results_file_is_refused_with_file_and_field(tmp_path, capsys, change, field):
    results = _choices(tmp_path, "ann.json", "ann", PREFER_B)
    results.write_text(json.dumps({**json.loads(results.read_text()), **change}))
    code, _, err = _run(capsys, "--results", str(results), "--key", str(_key(tmp_path)), "--no-log")
    assert code == 2 and str(results) in err and field in err and err.count("\n") == 1, err


def test_copies_under_other_names_count_as_one_rater(tmp_path, capsys):
    key = _key(tmp_path)
    ann = _choices(tmp_path, "choices-ann.json", "ann", PREFER_B)
    copies = [tmp_path / f"choices-{name}.json" for name in ("bea", "cy", "dan", "eve")]
    for copy, name in zip(copies, ("bea", "cy", "dan", "eve")):
        copy.write_text(json.dumps({**json.loads(ann.read_text()), "rater": name}))
    # An honest second rater who agrees on three pairs, at her own times, counts on her own.
    bob = _choices(tmp_path, "choices-bob.json", "bob", {**PREFER_B, "t4": "right"}, second=30)
    code, out, _ = _run(capsys, "--results", str(ann), *map(str, copies), str(bob), "--key", str(key), "--no-log")
    assert code == 0
    assert "B over A    0.875" in out and "7 of 8" in out  # not 23 of 24
    assert "4 pairs, 2 rater(s)" in out and "raters counted: ann / bea / cy / dan / eve, bob" in out
    assert "one rater (the same choices at the same times), counted once" in out and str(copies[-1]) in out
    assert "dropped 16 choice(s): the same choice again" in out


def test_one_session_under_two_names_counts_once_and_the_later_choice_wins(tmp_path, capsys):
    key, session = _key(tmp_path), "0123456789abcdef0123456789abcdef"
    first = _choices(tmp_path, "choices-ann.json", "ann", PREFER_B, session=session)
    again = _choices(tmp_path, "choices-zed.json", "zed", {"t1": "left"}, second=40, session=session)  # t1: A now
    code, out, _ = _run(capsys, "--results", str(first), str(again), "--key", str(key), "--json", "--no-log")
    result = json.loads(out)
    assert code == 0 and (result["raters"], result["pairs"], result["wins_b"], result["wins_a"]) == (1, 4, 3, 1)
    assert result["rater_names"] == ["ann / zed"]
    assert result["merged"] == [f"{first}, {again}: one rater (the same session id), counted once"]
    assert result["dropped"] == {"replaced by the same rater's later choice on that pair": 1}


def test_dropped_choices_and_what_was_counted_are_printed(tmp_path, capsys):
    key = _key(tmp_path)
    midway = _choices(tmp_path, "midway.json", "ann", {"t1": "left", "t2": "left"})
    final = _choices(tmp_path, "final.json", "ann", {"t1": "left", "t2": "right", "t3": "none"})
    final_export = json.loads(final.read_text())
    final_export["choices"][0]["at"] = json.loads(midway.read_text())["choices"][0]["at"]  # t1 unchanged: a repeat
    final_export["choices"][1]["at"] = "2026-01-01T00:01:00.000Z"  # t2 changed later
    final.write_text(json.dumps(final_export))
    code, out, _ = _run(capsys, "--results", str(midway), str(final), "--key", str(key), "--no-log")
    assert code == 0 and "3 pairs, 1 rater(s), 3 judgement(s), 1 with no preference" in out
    assert "raters counted: ann\n" in out
    assert f"merged: {midway}, {final}: one rater (the same name), counted once" in out
    assert "dropped 1 choice(s): the same choice again" in out
    assert "dropped 1 choice(s): replaced by the same rater's later choice on that pair" in out


# --- the page --------------------------------------------------------------------------------

HOSTILE = ["<!--<script>alert(1)<!--", "</script><script>alert(1)</script>", "x\u2028y\u2029<!--&amp;"]


def _hostile_page(tmp_path: Path, name: str) -> Path:
    """A page made from images whose file and folder names, and the page's own name, hold `name`."""
    data = tmp_path / "data" / name  # a "/" in the name makes folders of its parts
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        smooth = np.kron(rng.random((4, 4, 3)), np.ones((8, 8, 1)))
        Image.fromarray((smooth * 255).astype(np.uint8)).save(data / f"{name.replace('/', '_')}{i}.png")
    out = tmp_path / "pages" / name / (name.replace("/", "_") + ".html")
    return make_page("bicubic", "bicubic", str(tmp_path / "data"), out, crop=32, pairs_per_image=1, scale=4).page


def _inline(html: str, tag: str) -> str:
    return re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S).group(1)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_embedded_json_holds_nothing_the_html_parser_reads(tmp_path, name):
    html = _hostile_page(tmp_path, name).read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="rating-data">(.*?)</script>', html, re.S).group(1)
    assert not set(data) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(data)["key_file"] == name.replace("/", "_") + ".key.json"
    assert html.count("<script") == 2  # the data block and the page's script, nothing more


def test_the_csp_allows_only_the_pages_own_script_and_style_by_hash(tmp_path):
    html = _hostile_page(tmp_path, "plain").read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "unsafe-inline" not in csp and "nonce" not in csp
    policy = dict(part.strip().split(" ", 1) for part in csp.split(";"))

    def sha256(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert policy["script-src"] == sha256(_inline(html, "script"))
    assert policy["style-src"] == sha256(_inline(html, "style"))
    assert policy["default-src"] == "'none'" and policy["img-src"] == "data:"


def _browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    if _chromium() is None:
        pytest.skip("no Chromium on PATH: apt-get install -y chromium (or make browser)")
    return sync_api


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_leave_the_page_working_in_a_real_browser(tmp_path, name):
    sync_api = _browser()
    page_file = _hostile_page(tmp_path, name)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium())
        page = browser.new_page()
        dialogs, errors = [], []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_file.as_uri())
        progress = page.text_content("#progress")  # the page's script ran
        page.keyboard.press("0")
        status = page.text_content("#status")
        injected = page.evaluate("document.scripts.length")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        browser.close()
    assert progress == "1 of 2" and status.startswith("1 of 2 rated"), (progress, status)
    assert dialogs == [] and injected == 2
    assert errors == []  # no CSP refusal either: the hashes match the page's own script and style
    assert background == "rgb(30, 30, 30)"  # the hashed style applied


def test_the_page_exports_one_session_id_kept_across_reloads(tmp_path, capsys):
    sync_api = _browser()
    page_file = _hostile_page(tmp_path, "plain")
    exports = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium())
        page = browser.new_page(accept_downloads=True)
        page.goto(page_file.as_uri())
        for rater, key in (("ann", "1"), ("ann-again", "2")):
            page.fill("#rater", rater)
            page.locator("#rater").blur()
            page.keyboard.press(key)
            with page.expect_download() as download:
                page.click("#export")
            exports.append(tmp_path / f"{rater}.json")
            download.value.save_as(exports[-1])
            page.reload()
        browser.close()
    sessions = [json.loads(path.read_text())["session"] for path in exports]
    assert re.fullmatch("[0-9a-f]{32}", sessions[0]) and sessions[0] == sessions[1]
    key = str(key_path(page_file))
    code, out, _ = _run(capsys, "--results", *map(str, exports), "--key", key, "--json", "--no-log")
    result = json.loads(out)
    assert code == 0 and result["raters"] == 1 and result["rater_names"] == ["ann / ann-again"]
    assert "the same session id" in result["merged"][0]
