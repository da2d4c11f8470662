"""Checkpoints in BasicSR's and SRGAN-PyTorch's layouts run here as they ran there.

Each reference below is written from the published architecture with the authors' module
names, so its state dict has their keys; our import must compute what it computes."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srgan.fast import inference_form
from srgan.foreign import ForeignCheckpointError, import_state, load_foreign
from srgan.tiling import upscale_tiled


class BasicSRBlock(nn.Module):  # basicsr.archs.arch_util.ResidualBlockNoBN, res_scale 1
    def __init__(self, f):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(f, f, 3, 1, 1), nn.Conv2d(f, f, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class BasicSRMSRResNet(nn.Module):  # basicsr.archs.srresnet_arch.MSRResNet
    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[BasicSRBlock(num_feat) for _ in range(num_block)])
        if upscale in (2, 3):
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        else:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x):
        feat = self.lrelu(self.conv_first(x))
        out = self.body(feat)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)


class ResidualConvBlock(nn.Module):  # SRGAN-PyTorch model.py, _ResidualConvBlock
    def __init__(self, c):
        super().__init__()
        self.rcb = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.PReLU(),
            nn.Conv2d(c, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return x + self.rcb(x)


class UpsampleBlock(nn.Module):  # SRGAN-PyTorch model.py, _UpsampleBlock
    def __init__(self, c, f):
        super().__init__()
        self.upsample_block = nn.Sequential(nn.Conv2d(c, c * f * f, 3, 1, 1), nn.PixelShuffle(f), nn.PReLU())

    def forward(self, x):
        return self.upsample_block(x)


class LornatangSRResNet(nn.Module):  # SRGAN-PyTorch model.py, SRResNet
    def __init__(self, in_channels=3, out_channels=3, channels=64, num_rcb=16, upscale=4):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, channels, 9, 1, 4), nn.PReLU())
        self.trunk = nn.Sequential(*[ResidualConvBlock(channels) for _ in range(num_rcb)])
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
        self.upsampling = nn.Sequential(*[UpsampleBlock(channels, 2) for _ in range({2: 1, 4: 2, 8: 3}[upscale])])
        self.conv3 = nn.Conv2d(channels, out_channels, 9, 1, 4)

    def forward(self, x):
        c1 = self.conv1(x)
        x = self.conv2(self.trunk(c1)) + c1
        return torch.clamp_(self.conv3(self.upsampling(x)), 0.0, 1.0)


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.05, 0.4)
        if isinstance(m, nn.Conv2d):
            m.weight.data.mul_(0.5)
    return model.eval()


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
