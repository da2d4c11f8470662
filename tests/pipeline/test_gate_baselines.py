"""The perceptual gate races every candidate against no-learning baselines: bicubic + unsharp
mask and bicubic + faint noise, as models the gate scores like any other, are refused on real
images, and the reason names the strongest baseline and the checks that ran (no LPIPS here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import DataError
from pipeline.models.reference import Upscaler
from pipeline.promote import Gate, judge_perceptual, race
from pipeline.scoring.perceptual import score_model
from pipeline.scoring.protocol import iter_images, list_images
from srgan.baselines import FilterUpscaler, noise, usm

SCALE = 4


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    """A 200 x 200 crop of each bundled holdout photo: one NIQE block each on the most shifted
    grid, small enough to score the whole family quickly."""
    root = tmp_path_factory.mktemp("holdout")
    for name, image in iter_images(list_images("samples://holdout")):
        a = image.pixels
        top, left = (a.shape[0] - 200) // 2, (a.shape[1] - 200) // 2
        Image.fromarray(np.squeeze(a[top : top + 200, left : left + 200])).save(root / name)
    return list_images(root)


def _filter_model(baseline) -> Upscaler:
    return Upscaler(baseline.name, SCALE, generator=FilterUpscaler(baseline, SCALE), tile=0)


@pytest.fixture(scope="module")
def verdicts(holdout):
    gate = Gate(criterion="perceptual", min_blocks=3)
    first = race(gate, holdout, _filter_model(usm(1, 1.5)))
    out = {first.candidate.name: (first.promoted, first.why)}
    for b in (usm(2, 1.5), noise(2)):  # the baselines are the same for every candidate: score them once
        ok, why, _ = judge_perceptual(gate, score_model(holdout, _filter_model(b)), first.opponent, first.baselines)
        out[b.name] = (ok, why)
    return first, out


def test_sharpening_and_faint_noise_are_refused_naming_the_strongest_baseline(verdicts):
    first, out = verdicts
    assert set(out) == {usm(1, 1.5).name, usm(2, 1.5).name, noise(2).name}
    best = first.strongest.name
    assert best != "bicubic"  # some sharpening beats plain bicubic on NIQE: why it is in the race
    for name, (ok, why) in out.items():
        assert not ok, f"{name} was promoted: {why}"
        assert f"strongest no-learning baseline: {best} (NIQE" in why and "fails" in why, why
        # Without LPIPS weights the gate says what it ran instead.
        assert (
            "checks: NIQE (mean over block grids shifted by 0/3/6/9 px), GMSD, PSNR floor;" in why
            and "LPIPS" not in why
        )


def test_a_holdout_with_too_few_niqe_blocks_is_refused_with_its_count(holdout):
    with pytest.raises(DataError, match="the holdout has 3 NIQE blocks .* needs at least 36"):
        race(Gate(criterion="perceptual"), holdout, _filter_model(noise(2)))
