"""Promotion criteria on fixed generators whose behaviour is known by construction. Each makes
its output from the bicubic upscale and the true HR image (an oracle, so nothing is learned and
nothing is left to chance): bicubic itself; half of the true residual added back (closer to the
truth: distortion and perception both better); real texture from the image itself, misplaced by
a pixel (looks natural, costs some PSNR: what a GAN does); noise (worse on both); and the image
of another place (perfectly natural and perfectly wrong). Each criterion must promote what it
should and refuse the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.promote import Gate, PromotionError, judge
from pipeline.scoring.protocol import EvalReport, ImageScore, iter_images, list_images, sr_figures
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


def _promoted(criterion: str, reports: dict, **gate) -> set[str]:
    return {
        label for label, r in reports.items() if judge(criterion, Gate(criterion=criterion, **gate), r, r["bicubic"])[0]
    }


def test_the_perceptual_criterion_promotes_natural_detail_within_the_distortion_floor(reports):
    assert _promoted("perceptual", reports) == {"closer", "texture"}
    assert "wrong" in _promoted("perceptual", reports, psnr_floor=100.0)  # only the floor refuses it


def test_the_distortion_criterion_promotes_only_what_is_closer_to_the_truth(reports):
    assert _promoted("distortion", reports) == {"closer"}


def test_the_decision_names_every_figure_it_used(reports):
    ok, why, figures = judge("perceptual", Gate(criterion="perceptual"), reports["wrong"], reports["wrong"]["bicubic"])
    assert not ok and why.startswith("fails psnr_y") and "may be at most 2.0 dB lower" in why
    assert {"candidate_niqe", "baseline_niqe", "candidate_psnr_y", "baseline_psnr_y"} <= set(figures)


def test_auto_is_perceptual_for_gan_runs_and_a_holdout_without_niqe_is_refused():
    assert Gate().resolved("pretrain,gan") == "perceptual" and Gate().resolved("gan") == "perceptual"
    assert Gate().resolved("pretrain") == "distortion" and Gate().resolved("") == "distortion"
    assert Gate(criterion="distortion").resolved("gan") == "distortion"
    small = {"psnr_y": 30.0, "ssim_y": 0.9, "psnr": 30.0, "ssim": 0.9, "niqe": None, "lpips": None}
    with pytest.raises(PromotionError, match="perceptual criterion needs NIQE"):
        judge("perceptual", Gate(), small, small)
    with pytest.raises(PromotionError, match="`criterion` 'bogus' is not one of auto, distortion, perceptual"):
        Gate(criterion="bogus")
