"""A library error carries the names of the parameters it speaks of (`params`), and the CLI maps
those, not whatever its message happens to hold in backticks, to the command's flags."""

from __future__ import annotations

import pickle

import pytest

from pipeline import cli
from pipeline.errors import UsageError
from pipeline.upscale import build_parser
from pipeline.upscaling.job import UpscaleJob


def test_the_parameters_an_error_names_are_shown_as_flags_and_nothing_else():
    parser = cli.Parser("python -m pipeline.x", "", [])
    parser.add_argument("--output")
    parser.add_argument("--model")
    with pytest.raises(UsageError) as err, cli.naming_flags(parser):
        raise UsageError("`output` out exists; the tag `model` is kept", param="output")
    assert str(err.value) == "--output out exists; the tag `model` is kept"


def test_an_upscale_job_names_its_bad_setting_by_attribute_and_the_cli_by_flag(tmp_path):
    with pytest.raises(UsageError) as err:
        UpscaleJob(model="bicubic", input=str(tmp_path / "in"), output=str(tmp_path / "out"), scale=2, workers=0)
    assert err.value.params == ("workers",)
    assert pickle.loads(pickle.dumps(err.value)).params == ("workers",)  # as Ray hands errors back
    with pytest.raises(UsageError, match=r"^--workers 0: give 1 or more$"), cli.naming_flags(build_parser()):
        UpscaleJob(model="bicubic", input=str(tmp_path / "in"), output=str(tmp_path / "out"), scale=2, workers=0)
