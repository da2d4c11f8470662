"""Issue 24, point 5: an output that cannot be written is refused before the work starts (exit 2,
one line naming the flag, the path and the OS's reason), and a write that fails later ends the
same way, never in a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.evaluate import main as evaluate_main
from pipeline.export import main as export_main
from pipeline.io import storage
from pipeline.prepare import main as prepare_main
from pipeline.rate import main as rate_main
from pipeline.upscale import main as upscale_main
from srgan.generator import SRResNet
from srgan.weights import save_generator
from tests.helpers import one_error_line, write_images

UNWRITABLE = Path("/proc")  # nothing can be made there, not even by root


@pytest.fixture
def images(tmp_path) -> Path:
    write_images(tmp_path / "hr", 1, size=(32, 32))
    return tmp_path / "hr"


@pytest.fixture
def generator(tmp_path) -> Path:
    path = tmp_path / "g.pt"
    save_generator(path, SRResNet(scale=2, num_blocks=1, num_features=8))
    return path


def _verbs(images: Path, generator: Path, out: Path) -> dict[str, tuple]:
    """verb -> (its main, the flag of its output, its arguments writing to `out`)."""
    return {
        "export": (export_main, "--output", ["--model", str(generator), "--output", str(out / "x.onnx")]),
        "rate": (
            rate_main,
            "--out",
            ["--a", "bicubic", "--b", str(generator), "--data", str(images), "--out", str(out / "r.html")],
        ),
        "evaluate": (
            evaluate_main,
            "--grid",
            ["--model", "bicubic", "--scale", "2", "--data", str(images), "--grid", str(out / "nope" / "x.png")],
        ),
        "upscale": (
            upscale_main,
            "--output",
            [
                "--model",
                "bicubic",
                "--scale",
                "2",
                "--input",
                str(images),
                "--output",
                str(out / "up"),
                "--executor",
                "local",
            ],
        ),
        "prepare": (prepare_main, "--output", ["--input", str(images), "--output", str(out / "prepared")]),
    }


@pytest.mark.parametrize("verb", ["export", "rate", "evaluate", "upscale", "prepare"])
def test_an_output_that_cannot_be_written_is_refused_before_the_work_naming_flag_path_and_reason(
    verb, images, generator, tmp_path, capsys
):
    main, flag, args = _verbs(images, generator, UNWRITABLE)[verb]
    line = one_error_line(capsys, main(args))
    assert line.startswith(f"error: {flag} {UNWRITABLE}/") and line.endswith(": No such file or directory"), line
    assert "cannot write a file in /proc" in line or "cannot make a folder in /proc" in line, line


@pytest.mark.parametrize("verb", ["export", "rate", "evaluate"])
def test_an_output_under_a_file_is_refused_naming_the_file(verb, images, generator, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    main, flag, args = _verbs(images, generator, tmp_path / "a-file")[verb]
    line = one_error_line(capsys, main(args))
    assert line.startswith(f"error: {flag} {tmp_path / 'a-file'}/") and line.endswith(
        f"{tmp_path / 'a-file'} is a file, not a folder; choose another path"
    ), line
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_the_probe_leaves_nothing_behind_and_a_writable_output_passes(tmp_path):
    storage.check_writable(str(tmp_path / "x.onnx"), "`output`")
    storage.check_writable(str(tmp_path / "new" / "deeper" / "x.png"), "`grid`")
    storage.check_writable(str(tmp_path / "out"), "`output`", folder=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["export", "rate", "evaluate"])
def test_a_write_that_fails_after_the_check_ends_in_one_line_with_path_and_reason(
    verb, images, generator, tmp_path, capsys, monkeypatch
):
    """As if the folder went away (or the disk filled) while the work ran: the check passes,
    the write fails."""
    monkeypatch.setattr(storage, "check_writable", lambda *args, **kwargs: None)
    main, flag, args = _verbs(images, generator, UNWRITABLE)[verb]
    line = one_error_line(capsys, main(args), alone=False)
    assert line.startswith(f"error: cannot write {flag} {UNWRITABLE}/") and line.endswith(
        ": No such file or directory"
    ), line
    assert not list(tmp_path.glob("**/*.partial")) and not list(tmp_path.glob("**/.*.partial"))
