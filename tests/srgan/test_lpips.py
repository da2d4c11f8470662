import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from srgan.lpips import DATA_DIR, NETS, build_lpips, load_lpips, lpips_available
from srgan.weights import WeightsError


@pytest.fixture(scope="module")
def alex_state() -> dict:
    """Random AlexNet `features` weights (features-only keys `N.weight`), seeded."""
    torch.manual_seed(0)
    return NETS["alex"].build_features().state_dict()


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory, alex_state) -> Path:
    path = tmp_path_factory.mktemp("alex") / "alexnet_features.pth"
    torch.save(alex_state, path)
    return path


@pytest.fixture(scope="module")
def metric(alex_file):
    return load_lpips(str(alex_file))


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """No test sees the machine's torchvision cache, and URI downloads land in tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("SRGAN_CACHE", str(tmp_path / "srgan_cache"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image(seed: int, n: int = 1, c: int = 3, size: int = 64) -> torch.Tensor:
    """Smooth random images in [0, 1]: a coarse grid upsampled, like a photo more than noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_loads_a_local_backbone_file_frozen_in_eval_mode(alex_file, alex_state):
    model = load_lpips(str(alex_file), sha256=_sha(alex_file))
    assert torch.equal(model.stages[0][0].weight, alex_state["0.weight"])
    assert torch.equal(model.stages[4][0].weight, alex_state["10.weight"])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert lpips_available(str(alex_file)) == (True, "")


def test_loads_a_backbone_from_an_s3_uri_through_fetch_once(alex_file, alex_state):
    calls = []

    def fetch(uri: str, dest: Path) -> None:  # stands in for the pipeline's S3 download
        calls.append(uri)
        shutil.copyfile(alex_file, dest)

    for _ in range(2):
        model = load_lpips("s3://bucket/alexnet.pth", sha256=_sha(alex_file), fetch=fetch)
    assert calls == ["s3://bucket/alexnet.pth"]
    assert torch.equal(model.stages[1][1].weight, alex_state["3.weight"])
    assert lpips_available("s3://bucket/alexnet.pth") == (True, "")


def test_loads_torchvisions_cached_alexnet_without_downloading(tmp_path, alex_state):
    # torchvision's file is a full AlexNet state dict (keys `features.N.*`, `classifier.*`).
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    full = {f"features.{k}": v for k, v in alex_state.items()} | {"classifier.1.weight": torch.zeros(2, 2)}
    torch.save(full, checkpoints / "alexnet-owt-7be5be79.pth")
    assert lpips_available() == (True, "")
    for source in (None, "torchvision"):
        assert torch.equal(load_lpips(source).stages[0][0].weight, alex_state["0.weight"])


def test_missing_backbone_names_the_options(tmp_path):
    for source in (None, str(tmp_path / "absent.pth")):
        available, why = lpips_available(source)
        with pytest.raises(WeightsError) as err:
            load_lpips(source)
        for message in (why, str(err.value)):
            assert not available and "\n" not in message
            assert "alexnet-owt-7be5be79.pth" in message and str(tmp_path / "torch_home") in message
            assert "local file path" in message and "s3://" in message and "lpips_weights" in message


def test_checksum_mismatches_and_wrong_files_are_refused(tmp_path, alex_file):
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_lpips(str(alex_file), sha256="0" * 64)
    shipped = DATA_DIR / NETS["alex"].lin_file
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_lpips(str(alex_file), lin=str(shipped), lin_sha256="f" * 64)
    not_alexnet = tmp_path / "vgg.pth"
    torch.save(NETS["vgg"].build_features().state_dict(), not_alexnet)
    with pytest.raises(WeightsError, match="not a torchvision alexnet state dict"):
        load_lpips(str(not_alexnet))
    with pytest.raises(WeightsError, match="not LPIPS v0.1 'alex' linear weights"):
        load_lpips(str(alex_file), lin=str(alex_file))


def test_shipped_linear_weights_match_their_pinned_checksums():
    for spec in NETS.values():
        assert _sha(DATA_DIR / spec.lin_file) == spec.lin_sha256


def test_distance_is_zero_to_itself_symmetric_and_one_per_image(metric):
    a, b = _image(1, n=3), _image(2, n=3)
    d = metric(a, b)
    assert d.shape == (3,) and (d > 0).all()
    assert torch.equal(metric(a, a), torch.zeros(3))
    torch.testing.assert_close(metric(b, a), d, rtol=0, atol=1e-6)
    per_image = torch.cat([metric(a[i : i + 1], b[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(per_image, d, rtol=0, atol=1e-6)


def test_more_noise_is_farther(metric):
    x = _image(3, n=2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    near, far = (metric(x, (x + sigma * noise).clamp(0, 1)) for sigma in (0.05, 0.2))
    assert (far > near).all() and (near > 0).all()


def test_grayscale_is_scored_as_rgb_replicated(metric):
    a, b = _image(5, n=2, c=1), _image(6, n=2, c=1)
    d = metric(a, b)
    assert d.shape == (2,)
    torch.testing.assert_close(d, metric(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)), rtol=0, atol=1e-6)


def test_too_small_or_mismatched_images_fail_clearly(metric):
    with pytest.raises(ValueError, match="at least 31x31"):
        metric(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))


@pytest.mark.filterwarnings(
    "ignore:.*deprecated since 0.13"
)  # the reference builds torchvision models with pretrained=
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_the_reference_lpips_package(net):
    # The `lpips` package (Zhang et al.'s own code) with the same random backbone and the same
    # v0.1 linear weights; it is only installed for this comparison, never a dependency.
    reference_lpips = pytest.importorskip(
        "lpips", reason="the reference `lpips` package is not installed (pip install --no-deps lpips)"
    )
    spec = NETS[net]
    torch.manual_seed(7)
    backbone = spec.build_features().state_dict()
    lins = torch.load(DATA_DIR / spec.lin_file, map_location="cpu", weights_only=True)
    ours = build_lpips(backbone, lins, net)

    theirs = reference_lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    starts = (0, *spec.cuts[:-1])
    slice_of = {i: s + 1 for s, (lo, hi) in enumerate(zip(starts, spec.cuts)) for i in range(lo, hi)}
    theirs.net.load_state_dict({f"slice{slice_of[int(k.split('.')[0])]}.{k}": v for k, v in backbone.items()})
    theirs.load_state_dict(lins, strict=False)

    a, b = _image(8, n=2), _image(9, n=2)
    b = (b + 0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(10))).clamp(0, 1)
    with torch.no_grad():
        expected = theirs(a, b, normalize=True).flatten()
    torch.testing.assert_close(ours(a, b), expected, rtol=0, atol=1e-5)
