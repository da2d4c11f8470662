"""Promotion criteria on fixed generators whose behaviour is known by construction. Each makes
its output from the bicubic upscale and the true HR image (an oracle, so nothing is learned and
nothing is left to chance): bicubic itself; half of the true residual added back (closer to the
truth: distortion and perception both better); real texture from the image itself, misplaced by
a pixel (looks natural, costs some PSNR: what a GAN does); noise (worse on both); and the image
of another place (perfectly natural and perfectly wrong). Each criterion must promote what it
should and refuse the others; the perceptual one also races the no-learning baselines
(srgan.baselines) and decides by paired comparisons over images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import DataError
from pipeline.promote import Gate, PromotionError, judge, judge_perceptual
from pipeline.scoring.perceptual import Contender, _contender, _figures
from pipeline.scoring.protocol import EvalReport, ImageScore, iter_images, list_images, sr_figures
from srgan.baselines import family
from srgan.metrics import quantize
from srgan.resize import imresize

SCALE = 4


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :]) / 256
    for _ in range(2):
        x = torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), k.expand(x.shape[1], 1, 5, 5), groups=x.shape[1]
        )
    return x


def _detail(x: torch.Tensor) -> torch.Tensor:
    return x - _blur(x)


GENERATORS = {
    "bicubic": lambda bic, hr: bic,
    "closer": lambda bic, hr: bic + 0.5 * (hr - bic),
    "texture": lambda bic, hr: bic + _detail(torch.roll(hr, (1, 1), (2, 3))),
    "noise": lambda bic, hr: bic + 0.05 * torch.randn(bic.shape, generator=torch.Generator().manual_seed(0)),
    "wrong": lambda bic, hr: torch.roll(hr, (37, 53), (2, 3)),
}


@pytest.fixture(scope="module")
def reports():
    """Holdout means per generator, with bicubic's, as pipeline.scoring computes them."""
    pairs = []
    for name, image in iter_images(list_images("samples://holdout")):
        array = image.pixels
        h, w = array.shape[0] // SCALE * SCALE, array.shape[1] // SCALE * SCALE
        hr_native = torch.from_numpy(np.ascontiguousarray(array[:h, :w].transpose(2, 0, 1)))[None]
        bicubic = imresize(imresize(hr_native, 1 / SCALE), float(SCALE)).float() / 255
        pairs.append((name, bicubic, hr_native.float() / 255))
    out = {}
    for label, make in GENERATORS.items():
        scores = []
        for name, bicubic, hr in pairs:
            ours, base = (
                sr_figures(quantize(make(bicubic, hr).clamp(0, 1), 255), hr, SCALE),
                sr_figures(bicubic, hr, SCALE),
            )
            scores.append(
                ImageScore(
                    name, hr.shape[2], hr.shape[3], hr.shape[1], **ours, **{f"bicubic_{k}": v for k, v in base.items()}
                )
            )
        out[label] = EvalReport("holdout", label, SCALE, scores).to_dict()
    return out


def test_the_fixed_generators_behave_as_constructed(reports):
    b = reports["bicubic"]["bicubic"]
    assert reports["bicubic"]["psnr_y"] == b["psnr_y"] and reports["bicubic"]["niqe"] == b["niqe"]
    assert reports["closer"]["psnr_y"] > b["psnr_y"] + 3 and reports["closer"]["niqe"] < b["niqe"] - 1
    assert b["psnr_y"] - 2 < reports["texture"]["psnr_y"] < b["psnr_y"] and reports["texture"]["niqe"] < b["niqe"] - 2
    assert reports["noise"]["psnr_y"] < b["psnr_y"] - 1 and reports["noise"]["niqe"] > b["niqe"] + 1
    assert reports["wrong"]["psnr_y"] < b["psnr_y"] - 10 and reports["wrong"]["niqe"] < b["niqe"] - 2


@pytest.fixture(scope="module")
def contenders() -> tuple[dict[str, Contender], list[Contender]]:
    """Per-image perceptual figures of each generator and of the no-learning baselines, on a
    200 x 200 crop of each holdout photo (one NIQE block each on the most shifted grid)."""
    pairs = []
    for name, image in iter_images(list_images("samples://holdout")):
        a = image.pixels
        top, left = (a.shape[0] - 200) // 2, (a.shape[1] - 200) // 2
        hr_native = torch.from_numpy(np.ascontiguousarray(a[top : top + 200, left : left + 200].transpose(2, 0, 1)))[
            None
        ]
        bicubic = imresize(imresize(hr_native, 1 / SCALE), float(SCALE)).float() / 255
        pairs.append((name, bicubic, hr_native.float() / 255))

    def contender(label, make):
        return _contender(
            label, [(n, _figures(quantize(make(b, h).clamp(0, 1), 255), h, SCALE, None)) for n, b, h in pairs]
        )

    baselines = [contender(f.name, lambda b, h, f=f: f.apply(b)) for f in family()]
    return {label: contender(label, make) for label, make in GENERATORS.items()}, baselines


def _promoted(contenders, **gate) -> set[str]:
    ours, baselines = contenders
    bicubic = next(b for b in baselines if b.name == "bicubic")
    g = Gate(criterion="perceptual", min_blocks=3, **gate)
    return {label for label, c in ours.items() if judge_perceptual(g, c, bicubic, baselines)[0]}


def test_the_perceptual_criterion_promotes_natural_detail_within_the_distortion_floor(contenders):
    assert _promoted(contenders) == {"closer", "texture"}
    # The image of another place is refused by GMSD (full reference) even without the PSNR floor.
    assert _promoted(contenders, psnr_floor=100.0) == {"closer", "texture"}


def test_the_distortion_criterion_promotes_only_what_is_closer_to_the_truth(reports):
    promoted = {
        label for label, r in reports.items() if judge("distortion", Gate(criterion="distortion"), r, r["bicubic"])[0]
    }
    assert promoted == {"closer"}


def test_the_decision_names_every_figure_it_used(contenders):
    ours, baselines = contenders
    bicubic = next(b for b in baselines if b.name == "bicubic")
    ok, why, figures = judge_perceptual(Gate(criterion="perceptual", min_blocks=3), ours["wrong"], bicubic, baselines)
    assert not ok and "fails vs bicubic: GMSD" in why and "may be at most 2.0 dB lower" in why
    assert "strongest no-learning baseline: bicubic+usm(" in why and "paired bootstrap over 3 images" in why
    assert {"candidate_niqe", "baseline_niqe", "strongest_niqe", "candidate_gmsd", "candidate_psnr"} <= set(figures)


def test_auto_is_perceptual_for_gan_runs_and_a_holdout_without_niqe_blocks_is_refused():
    assert Gate().resolved("pretrain,gan") == "perceptual" and Gate().resolved("gan") == "perceptual"
    assert Gate().resolved("pretrain") == "distortion" and Gate().resolved("") == "distortion"
    assert Gate(criterion="distortion").resolved("gan") == "distortion"
    empty = Contender("small", [], 0, [], [], [])
    with pytest.raises(DataError, match="the holdout has 0 NIQE blocks .* needs at least 36"):
        judge_perceptual(Gate(), empty, empty, [empty])
    with pytest.raises(PromotionError, match="`criterion` 'bogus' is not one of auto, distortion, perceptual"):
        Gate(criterion="bogus")
