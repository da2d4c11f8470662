import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import tracking
from pipeline.rate import count_choices, main, make_page, rate_results, wilson_interval
from srgan.generator import SRResNet
from srgan.weights import save_generator


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def hr_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(3):
        smooth = np.kron(rng.random((6, 8, 3)), np.ones((8, 8, 1)))
        Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def generator_file(tmp_path):
    path = tmp_path / "tiny-generator.pt"
    save_generator(path, SRResNet(scale=4, num_blocks=1, num_features=8))
    return path


def _shown(page: Path) -> dict:
    """The data the page's script reads: what a rater (or the DOM) can see of each pair."""
    found = re.search(r'<script type="application/json" id="rating-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(found.group(1))


def _export(key: dict, pick, rater: str = "ann") -> dict:
    """What the page exports when `pick(side shown on the left)` gives each choice."""
    choices = [
        {"pair": token, "choice": pick(pair["left"]), "at": f"2026-01-01T00:00:{i:02d}Z"}
        for i, (token, pair) in enumerate(key["pairs"].items())
    ]
    return {
        "format": "srgan-rate/1",
        "page_id": key["page_id"],
        "key_file": "rating.key.json",
        "rater": rater,
        "choices": choices,
    }


def _prefer_b(left: str) -> str:
    return "left" if left == "b" else "right"


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (score interval).
    for successes, n, low, high in [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ]:
        assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)  # one-sided, still a real interval
    assert wilson_interval(0, 0) is None


def test_page_hides_which_side_is_which(tmp_path, hr_folder, generator_file, capsys):
    out = tmp_path / "pages" / "rating.html"
    code, stdout, _ = _run(
        capsys,
        "--a",
        "bicubic",
        "--b",
        str(generator_file),
        "--data",
        str(hr_folder),
        "--out",
        str(out),
        "--crop",
        "32",
        "--json",
    )
    assert code == 0 and json.loads(stdout) == {
        "page": str(out),
        "key": str(tmp_path / "pages" / "rating.key.json"),
        "pairs": 6,
    }
    html, key, shown = out.read_text(), json.loads((tmp_path / "pages" / "rating.key.json").read_text()), _shown(out)

    assert "http://" not in html and "https://" not in html
    for pair in shown["pairs"]:
        assert set(pair) == {"token", "lr", "left", "right"}  # no side label, no model name
        assert all(pair[k].startswith("data:image/png;base64,") for k in ("lr", "left", "right"))
    for secret in ("bicubic", "tiny-generator", str(tmp_path), "model a", "model b"):
        assert secret.lower() not in html.lower(), secret
    assert not {'"a"', '"b"'} & set(re.findall(r'"[ab]"', json.dumps(shown)))  # no side as a value either
    # The key holds the sides, balanced: half the pairs show A on the left.
    assert {p["token"] for p in shown["pairs"]} == set(key["pairs"])
    assert sorted(p["left"] for p in key["pairs"].values()) == ["a"] * 3 + ["b"] * 3
    assert key["a"] == "bicubic" and key["b"] == str(generator_file) and key["runs"] == {"a": None, "b": None}

    # The same seed draws the same crops and sides; the tokens are new each time.
    again = make_page("bicubic", str(generator_file), str(hr_folder), tmp_path / "again.html", crop=32)
    key2 = json.loads(again.key.read_text())
    assert [(p["image"], p["box_top_left_size"], p["left"]) for p in key2["pairs"].values()] == [
        (p["image"], p["box_top_left_size"], p["left"]) for p in key["pairs"].values()
    ]
    assert not set(key2["pairs"]) & set(key["pairs"])


def test_choices_decode_into_counts_and_shares(tmp_path):
    key = {
        "format": "srgan-rate-key/1",
        "page_id": "p1",
        "a": "bicubic",
        "b": "g.pt",
        "runs": {},
        "pairs": {t: {"left": s} for t, s in [("t1", "a"), ("t2", "b"), ("t3", "a"), ("t4", "b")]},
    }
    ann = {
        "format": "srgan-rate/1",
        "page_id": "p1",
        "rater": "ann",
        "choices": [
            {"pair": "t1", "choice": "right", "at": "1"},  # B
            {"pair": "t2", "choice": "left", "at": "2"},  # B
            {"pair": "t3", "choice": "left", "at": "3"},  # A ...
            {"pair": "t3", "choice": "right", "at": "4"},  # ... changed to B later: the later choice counts
            {"pair": "t4", "choice": "none", "at": "5"},  # a tie
        ],
    }
    bob = {
        "format": "srgan-rate/1",
        "page_id": "p1",
        "rater": "bob",
        "choices": [{"pair": "t1", "choice": "left", "at": "1"}, {"pair": "t2", "choice": "left", "at": "1"}],
    }  # A, B
    result = count_choices(key, [("ann.json", ann), ("bob.json", bob)]).to_dict()
    assert (result["wins_b"], result["wins_a"], result["ties"], result["judgements"]) == (4, 1, 1, 6)
    assert (result["pairs"], result["raters"]) == (4, 2)
    assert result["preference_b"] == pytest.approx(0.8) and result["preference_a"] == pytest.approx(0.2)
    assert result["preference_b_ci95"] == pytest.approx((0.3755, 0.9638), abs=1e-4)
    assert result["left_share"] == pytest.approx(3 / 5)


def test_errors_are_one_line_and_exit_2(tmp_path, hr_folder, generator_file, capsys):
    page = make_page("bicubic", str(generator_file), str(hr_folder), tmp_path / "rating.html", crop=32)
    key = json.loads(page.key.read_text())
    other = make_page("bicubic", str(generator_file), str(hr_folder), tmp_path / "other.html", crop=32)
    choices = tmp_path / "choices.json"
    choices.write_text(json.dumps(_export(key, _prefer_b)))
    (tmp_path / "garbage.json").write_text("not json")
    (tmp_path / "foreign.json").write_text(
        json.dumps({**_export(key, _prefer_b), "choices": [{"pair": "nope", "choice": "left", "at": "1"}]})
    )
    cases = [
        (["--a", "bicubic", "--b", str(generator_file), "--data", str(tmp_path / "nowhere")], "does not exist"),
        (
            ["--a", "bicubic", "--b", str(tmp_path / "missing.pt"), "--data", str(hr_folder)],
            "missing.pt does not exist",
        ),
        (["--a", "bicubic", "--b", "bicubic", "--data", str(hr_folder)], "needs --scale"),
        (
            ["--a", "bicubic", "--b", str(generator_file), "--data", str(hr_folder), "--scale", "2"],
            "upscales x4, but --scale 2",
        ),
        (["--a", "bicubic", "--data", str(hr_folder)], "give --a, --b and --data"),
        (["--results", str(choices), "--a", "bicubic"], "give one or the other"),
        (["--results", str(choices), "--key", str(other.key)], "but the key is for page"),
        (["--results", str(tmp_path / "foreign.json"), "--key", str(page.key)], "is not a choice on this key's page"),
        (["--results", str(tmp_path / "garbage.json"), "--key", str(page.key)], "is not a JSON object"),
        (["--results", str(tmp_path / "absent.json")], "absent.json does not exist"),
        (["--results", str(choices), "--key", str(choices)], "is not a rating page's key"),
    ]
    for args, message in cases:
        code, _, err = _run(capsys, *args)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)


def test_results_table_and_no_run_note(tmp_path, hr_folder, generator_file, capsys):
    page = make_page("bicubic", str(generator_file), str(hr_folder), tmp_path / "rating.html", crop=32)
    (tmp_path / "choices-ann.json").write_text(json.dumps(_export(json.loads(page.key.read_text()), _prefer_b)))
    code, out, _ = _run(capsys, "--results", str(tmp_path / "choices-ann.json"))  # the key is found beside the file
    assert code == 0
    assert (
        "B over A    1.000  0.610 - 1.000    6 of 6" in out
        and "A over B    0.000  0.000 - 0.390    0 of 6" in out
        and "6 pairs, 1 rater(s)" in out
    )
    assert out.count("no MLflow run") == 1 and "bicubic and " + str(generator_file) in out


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def test_a_rater_in_a_real_browser(tmp_path, hr_folder, generator_file, capsys):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    if _chromium() is None:
        pytest.skip(
            "no Chromium on PATH: apt-get install -y chromium (Debian's package; playwright drives it, no browser download)"
        )
    page_file = make_page("bicubic", str(generator_file), str(hr_folder), tmp_path / "rating.html", crop=32).page
    key = json.loads((tmp_path / "rating.key.json").read_text())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium())
        page = browser.new_page(accept_downloads=True)
        fetched = []
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(page_file.as_uri())
        page.fill("#rater", "ann")
        page.locator("#rater").blur()
        decided = []
        for i in range(6):
            assert page.text_content("#progress") == f"{i + 1} of 6"
            token = page.get_attribute("#pair", "data-pair")
            b_side = "left" if key["pairs"][token]["left"] == "b" else "right"
            if i == 0:
                page.click("button[data-choice=none]")  # a tie
            elif i == 1:
                page.keyboard.press("ArrowLeft" if b_side == "right" else "ArrowRight")  # A, by keyboard
            elif i % 2:
                page.keyboard.press("1" if b_side == "left" else "2")  # B, by keyboard
            else:
                page.click(f"#{b_side}")  # B, by clicking the picture
            decided.append(token)
        assert "6 of 6 rated" in page.text_content("#status")
        with page.expect_download() as download:
            page.click("#export")
        download.value.save_as(tmp_path / "choices.json")
        browser.close()
    assert fetched == [page_file.as_uri()]  # self-contained: nothing else was fetched
    export = json.loads((tmp_path / "choices.json").read_text())
    assert export["rater"] == "ann" and sorted(c["pair"] for c in export["choices"]) == sorted(decided)

    code, out, _ = _run(
        capsys, "--results", str(tmp_path / "choices.json"), "--key", str(tmp_path / "rating.key.json"), "--json"
    )
    result = json.loads(out)
    assert code == 0 and (result["wins_b"], result["wins_a"], result["ties"], result["pairs"], result["raters"]) == (
        4,
        1,
        1,
        6,
        1,
    )
    assert result["preference_b"] == pytest.approx(0.8) and result["preference_b_ci95"] == pytest.approx(
        (0.3755, 0.9638), abs=1e-4
    )


def test_result_is_logged_on_both_models_runs(tmp_path, hr_folder, generator_file, mlflow_uri, capsys):
    c = tracking.client(mlflow_uri)
    experiment = tracking.ensure_experiment(mlflow_uri, "rate-test")
    run_a, run_b = (c.create_run(experiment).info.run_id for _ in range(2))
    c.log_artifact(run_a, str(generator_file.rename(tmp_path / "generator.pt")))  # runs:/<id> loads generator.pt
    c.log_artifact(run_b, str(tmp_path / "generator.pt"), "data")  # a registry version: its data/generator.pt
    c.create_registered_model("rated")
    c.create_model_version("rated", source=c.get_run(run_b).info.artifact_uri, run_id=run_b)
    c.set_registered_model_alias("rated", "champion", "1")

    page = make_page(
        f"runs:/{run_a}",
        "models:/rated@champion",
        str(hr_folder),
        tmp_path / "rating.html",
        crop=32,
        pairs_per_image=1,
        tracking_uri=mlflow_uri,
    )
    key = json.loads(page.key.read_text())
    assert key["runs"] == {"a": run_a, "b": run_b}
    (tmp_path / "choices.json").write_text(json.dumps(_export(key, _prefer_b)))
    code, out, err = _run(capsys, "--results", str(tmp_path / "choices.json"), "--tracking-uri", mlflow_uri, "--json")
    assert code == 0 and json.loads(out)["preference_b"] == 1.0
    assert f"logged on run {run_a}" in err and f"logged on run {run_b}" in err

    metrics_a, metrics_b = c.get_run(run_a).data.metrics, c.get_run(run_b).data.metrics
    assert metrics_b["rate/preferred"] == 1.0 and metrics_a["rate/preferred"] == 0.0
    assert (
        metrics_b["rate/preferred_low"] == pytest.approx(wilson_interval(3, 3)[0]) and metrics_a["rate/judgements"] == 3
    )
    for run_id, side in ((run_a, "a"), (run_b, "b")):
        logged = json.loads(
            Path(tracking.download(f"runs:/{run_id}/rate/{key['page_id']}.json", mlflow_uri)).read_text()
        )
        assert logged["this_run"] == side and logged["wins_b"] == 3 and logged["b"] == "models:/rated@champion"
    assert rate_results([tmp_path / "choices.json"]).wins_b == 3  # the key is found beside the file
