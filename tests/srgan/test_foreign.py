"""Checkpoints in BasicSR's and SRGAN-PyTorch's layouts run here as they ran there.

Each reference below is written from the published architecture with the authors' module
names, so its state dict has their keys; our import must compute what it computes."""

import sys
import types

import pytest
import torch

from srgan.fast import inference_form
from srgan.foreign import ForeignCheckpointError, import_state, load_foreign
from srgan.tiling import upscale_tiled
from tests.helpers import BasicSRMSRResNet, LornatangSRResNet, trained_looking


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_basicsr_msrresnet_checkpoint_computes_what_basicsr_computes(tmp_path, scale):
    ref = trained_looking(BasicSRMSRResNet(num_feat=16, num_block=3, upscale=scale))
    other = trained_looking(BasicSRMSRResNet(num_feat=16, num_block=3, upscale=scale), seed=1)
    # What BasicSR saves: the EMA weights beside the plain ones (the EMA ones are used).
    torch.save({"params_ema": ref.state_dict(), "params": other.state_dict()}, tmp_path / "net_g.pth")
    ours, meta = load_foreign(tmp_path / "net_g.pth", "basicsr")
    assert ours.spec.arch == "msrresnet" and ours.spec.scale == scale and meta == {"imported_from": "basicsr"}
    x = torch.rand(2, 3, 13, 17)
    with torch.inference_mode():
        expected = ref(x)
        assert (ours(x) - expected).abs().max() <= 1e-5
        assert (inference_form(ours)(x) - expected).abs().max() <= 1e-5
        # Tiles stay exact with the radius measured on this architecture.
        assert (upscale_tiled(ours, x, scale, tile=5) - expected).abs().max() <= 1e-5


def test_mmsr_names_and_a_bare_state_dict_load_too():
    ref = trained_looking(BasicSRMSRResNet(num_feat=8, num_block=2, upscale=4))
    old = {k.replace("body.", "recon_trunk.").replace("conv_hr.", "HRconv."): v for k, v in ref.state_dict().items()}
    ours, _ = import_state(old, "basicsr")
    x = torch.rand(1, 3, 9, 9)
    with torch.inference_mode():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_an_srgan_pytorch_checkpoint_computes_what_it_computed_there(tmp_path, scale):
    ref = trained_looking(LornatangSRResNet(channels=16, num_rcb=3, upscale=scale))
    # As its training scripts save it: under state_dict, keys prefixed by torch.compile.
    state = {f"_orig_mod.{k}": v for k, v in ref.state_dict().items()}
    torch.save({"epoch": 3, "psnr": 30.1, "state_dict": state, "optimizer": {}}, tmp_path / "g.pth.tar")
    ours, _ = load_foreign(tmp_path / "g.pth.tar", "srgan-pytorch")
    assert (
        ours.spec.arch == "srresnet" and ours.spec.batch_norm and ours.spec.scale == scale and ours.spec.num_blocks == 3
    )
    x = torch.rand(2, 3, 11, 14)
    with torch.inference_mode():
        expected = ref(x)  # clamped to [0, 1] there; our upscaler clamps too
        assert (ours(x).clamp(0, 1) - expected).abs().max() <= 1e-5
        assert (inference_form(ours)(x).clamp(0, 1) - expected).abs().max() <= 1e-5


def test_the_mid_2022_srgan_pytorch_names_load_too():
    ref = trained_looking(LornatangSRResNet(channels=8, num_rcb=2, upscale=4))
    old = {
        k.replace("conv1.", "conv_block1.", 1).replace("conv2.", "conv_block2.", 1).replace("conv3.", "conv_block3.", 1)
        if not k.startswith("trunk")
        else k: v
        for k, v in ref.state_dict().items()
    }
    ours, _ = import_state({"state_dict": old}, "srgan-pytorch")
    x = torch.rand(1, 3, 9, 9)
    with torch.inference_mode():
        assert (ours(x).clamp(0, 1) - ref(x)).abs().max() <= 1e-5


def test_a_checkpoint_of_another_layout_names_its_missing_and_unexpected_keys(tmp_path):
    basicsr = BasicSRMSRResNet(num_feat=8, num_block=2).state_dict()
    with pytest.raises(
        ForeignCheckpointError,
        match=r"not a srgan-pytorch checkpoint: missing keys conv1.0.weight, conv3.weight .*basicsr:<file>",
    ):
        import_state({"params": basicsr}, "srgan-pytorch")
    extra = {**basicsr, "body.0.scale": torch.ones(1)}
    with pytest.raises(ForeignCheckpointError, match=r"unexpected keys body.0.scale"):
        import_state(extra, "basicsr")
    partial = {k: v for k, v in basicsr.items() if not k.startswith("conv_hr.")}
    with pytest.raises(ForeignCheckpointError, match=r"missing keys hr_conv.weight, hr_conv.bias"):
        import_state(partial, "basicsr")
    wrong = dict(basicsr)
    wrong["body.1.conv2.weight"] = torch.zeros(8, 8, 5, 5)
    with pytest.raises(ForeignCheckpointError, match=r"size mismatch for body.1.conv2.weight"):
        import_state(wrong, "basicsr")
    with pytest.raises(ForeignCheckpointError, match="unknown checkpoint layout 'esrgan'"):
        import_state(basicsr, "esrgan")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ForeignCheckpointError, match=r"cannot read .*junk.pth as a basicsr checkpoint"):
        load_foreign(tmp_path / "junk.pth", "basicsr")


def test_a_checkpoint_that_would_run_code_when_unpickled_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"params": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ForeignCheckpointError, match="cannot read"):
        load_foreign(tmp_path / "evil.pth", "basicsr")
    assert not marker.exists()


def test_the_reference_above_is_basicsrs_own_msrresnet():
    """Where basicsr is installed (make bench), its own class gives the same outputs as the
    reference these tests use."""
    try:
        import torchvision.transforms.functional as TF

        shim = types.ModuleType("torchvision.transforms.functional_tensor")
        shim.rgb_to_grayscale = TF.rgb_to_grayscale
        sys.modules.setdefault("torchvision.transforms.functional_tensor", shim)
        from basicsr.archs.srresnet_arch import MSRResNet
    except ImportError as exc:
        pytest.skip(f"basicsr is not installed ({exc}); `make bench` installs it")
    theirs = trained_looking(MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=3, upscale=4))
    ours, _ = import_state({"params": theirs.state_dict()}, "basicsr")
    x = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5
