import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.models import vgg19

from srgan.generator import SRResNet
from srgan.weights import WeightsError, cached_fetch, load_generator, load_vgg19_features, save_generator


@pytest.fixture(scope="module")
def vgg_state():
    return vgg19(weights=None).state_dict()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory, vgg_state) -> Path:
    """A full torchvision-layout VGG19 state dict on disk (548 MB), written once."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(vgg_state, path)
    return path


def _features_only(state: dict) -> dict:
    return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_vgg19_loads_from_a_full_state_dict_file(vgg_file, vgg_state):
    features = load_vgg19_features(str(vgg_file), sha256=_sha(vgg_file))
    assert torch.equal(features[34].weight, vgg_state["features.34.weight"])


def test_vgg19_loads_from_a_features_only_file(tmp_path, vgg_state):
    path = tmp_path / "features.pth"
    torch.save(_features_only(vgg_state), path)
    features = load_vgg19_features(str(path))
    assert torch.equal(features[0].weight, vgg_state["features.0.weight"])


def test_wrong_checksum_and_wrong_architecture_fail_clearly(tmp_path, vgg_file):
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_vgg19_features(str(vgg_file), sha256="0" * 64)
    bad = tmp_path / "not_vgg.pth"
    torch.save({"0.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="not a VGG19 state dict"):
        load_vgg19_features(str(bad))


def test_missing_source_names_the_three_options(tmp_path):
    for source in (None, str(tmp_path / "absent.pth")):
        with pytest.raises(WeightsError) as err:
            load_vgg19_features(source)
        message = str(err.value)
        assert "'torchvision'" in message and "local file path" in message and "s3://" in message
        assert "\n" not in message


def test_offline_torchvision_source_fails_with_the_options(tmp_path, monkeypatch):
    # A real download attempt through a proxy on a closed local port: the offline case,
    # made deterministic, with nothing mocked. An empty TORCH_HOME means no cached file.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(WeightsError) as err:
        load_vgg19_features("torchvision")
    message = str(err.value)
    assert "torch_home" in message  # names the cache it looked in
    assert "'torchvision'" in message and "local file path" in message and "s3://" in message


def test_torchvision_source_uses_a_pre_seeded_cache(tmp_path, monkeypatch, vgg_file, vgg_state):
    # What an offline cluster does: put the file where torchvision looks (TORCH_HOME).
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "vgg19-dcbb9e9d.pth").symlink_to(vgg_file)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    features = load_vgg19_features("torchvision")
    assert torch.equal(features[0].weight, vgg_state["features.0.weight"])


def test_uri_is_fetched_once_into_the_cache_and_checked(tmp_path, vgg_state):
    origin = tmp_path / "origin.pth"
    torch.save(_features_only(vgg_state), origin)
    calls = []

    def fetch(uri: str, dest: Path) -> None:  # stands in for the pipeline's S3 download
        calls.append(uri)
        shutil.copyfile(origin, dest)

    cache = tmp_path / "cache"
    first = cached_fetch("s3://bucket/vgg19.pth", _sha(origin), fetch, cache)
    second = cached_fetch("s3://bucket/vgg19.pth", _sha(origin), fetch, cache)
    assert first == second and first.read_bytes() == origin.read_bytes()
    assert calls == ["s3://bucket/vgg19.pth"]
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        cached_fetch("s3://bucket/other.pth", "f" * 64, fetch, cache)
    assert not list(cache.glob(".partial-*")) and not list(cache.glob("*other*"))
    with pytest.raises(WeightsError, match="no fetcher"):
        cached_fetch("s3://bucket/x.pth", None, None, cache)


def test_generator_checkpoint_round_trip(tmp_path):
    g = SRResNet(scale=2, in_channels=1, out_channels=1, num_blocks=2, num_features=8)
    save_generator(tmp_path / "g.pt", g, meta={"data_range": 65535})
    loaded, meta = load_generator(tmp_path / "g.pt")
    assert meta == {"data_range": 65535} and loaded.scale == 2 and not loaded.training
    x = torch.rand(1, 1, 8, 8)
    g.eval()
    assert torch.equal(g(x), loaded(x))
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an srgan generator"):
        load_generator(tmp_path / "other.pt")
