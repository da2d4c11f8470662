"""Checkpoints trained elsewhere are recognised by their keys and run here as they ran there.

Each reference below is written from the published architecture with the authors' module
names (or is spandrel's own module), so its state dict has their keys; our import must
compute what it computes. Then the refusals: another layout's keys, a hostile size, a
pickle that would run code."""

import sys
import time
import types

import pytest
import torch

from srgan.archs.checkpoint import CheckpointError
from srgan.archs.registry import import_state, load_file
from srgan.fast import inference_form
from srgan.generator import GeneratorSpec
from srgan.rrdbnet import RRDBNet
from srgan.tiling import upscale_tiled
from srgan.weights import save_generator
from tests.helpers import BasicSRMSRResNet, LeftthomasGenerator, LornatangSRResNet, trained_looking, with_conv_biases


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_basicsr_msrresnet_checkpoint_computes_what_basicsr_computes(tmp_path, scale):
    ref = trained_looking(BasicSRMSRResNet(num_feat=16, num_block=3, upscale=scale))
    other = trained_looking(BasicSRMSRResNet(num_feat=16, num_block=3, upscale=scale), seed=1)
    # What BasicSR saves: the EMA weights beside the plain ones (the EMA ones are used).
    torch.save({"params_ema": ref.state_dict(), "params": other.state_dict()}, tmp_path / "net_g.pth")
    ours, meta = load_file(tmp_path / "net_g.pth")  # recognised by its keys: no layout given
    assert ours.spec.arch == "msrresnet" and ours.spec.scale == scale
    assert meta == {"arch": "msrresnet", "layout": "basicsr", "wrapper": "params_ema"}
    assert load_file(tmp_path / "net_g.pth", "basicsr")[0].spec == ours.spec  # the prefix still forces it
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
    ours, _ = import_state(old)
    x = torch.rand(1, 3, 9, 9)
    with torch.inference_mode():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_an_srgan_pytorch_checkpoint_computes_what_it_computed_there(tmp_path, scale):
    ref = trained_looking(LornatangSRResNet(channels=16, num_rcb=3, upscale=scale))
    # As its training scripts save it: under state_dict, keys prefixed by torch.compile.
    state = {f"_orig_mod.{k}": v for k, v in ref.state_dict().items()}
    torch.save({"epoch": 3, "psnr": 30.1, "state_dict": state, "optimizer": {}}, tmp_path / "g.pth.tar")
    ours, _ = load_file(tmp_path / "g.pth.tar")
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
    ours, _ = import_state({"state_dict": old})
    x = torch.rand(1, 3, 9, 9)
    with torch.inference_mode():
        assert (ours(x).clamp(0, 1) - ref(x)).abs().max() <= 1e-5


def test_a_checkpoint_of_another_layout_names_its_missing_and_unexpected_keys(tmp_path):
    basicsr = BasicSRMSRResNet(num_feat=8, num_block=2).state_dict()
    with pytest.raises(
        CheckpointError,
        match=r"is not a SRResNet \(SRGAN-PyTorch\) checkpoint: missing keys conv1.0.weight, trunk.N.rcb.0.weight.*; unexpected keys conv_first.weight",
    ):
        import_state({"params": basicsr}, "srgan-pytorch")
    extra = {**basicsr, "body.0.scale": torch.ones(1)}
    with pytest.raises(
        CheckpointError, match=r"closest is MSRResNet \(BasicSR\) \(basicsr:<file>\): unexpected body.0.scale"
    ):
        import_state(extra)
    partial = {k: v for k, v in basicsr.items() if not k.startswith("conv_hr.")}
    with pytest.raises(
        CheckpointError,
        match=r"matches no architecture tried \(SRResNet .*spandrel.*\); closest is MSRResNet .*missing conv_hr.weight",
    ):
        import_state(partial)
    wrong = dict(basicsr)
    wrong["body.1.conv2.weight"] = torch.zeros(8, 8, 5, 5)
    with pytest.raises(CheckpointError, match=r"size mismatch for body.1.conv2.weight"):
        import_state(wrong)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout 'nope'"):
        import_state(basicsr, "nope")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk.pth is not a PyTorch checkpoint"):
        load_file(tmp_path / "junk.pth")


def test_a_checkpoint_that_would_run_code_when_unpickled_is_refused_with_what_it_is(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"params": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as caught:
        load_file(tmp_path / "evil.pth")
    message = str(caught.value)
    assert "is a pickle that may run code when loaded" in message and "safetensors" in message
    assert "weights_only=False" not in message.split("if you trust")[0]  # no advice to run it
    assert "\n" not in message and not marker.exists()


def test_a_hostile_block_count_is_refused_at_once_and_nothing_is_built(tmp_path):
    small = BasicSRMSRResNet(num_feat=4, num_block=1).state_dict()
    state = {k.replace("body.0.", "body.999999."): v for k, v in small.items()}
    torch.save({"params": state}, tmp_path / "hostile.pth")
    assert (tmp_path / "hostile.pth").stat().st_size < 20_000
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"index 999999, over the 4096"):
        load_file(tmp_path / "hostile.pth")
    # An index under the key bound but a block count over the spec's bound, and a model
    # that would need far more weights than the file holds: refused before building either.
    state = {k.replace("body.0.", "body.4000."): v for k, v in small.items()}
    with pytest.raises(CheckpointError, match=r"num_blocks = 4001 is outside 0..128"):
        import_state(state)
    wide = BasicSRMSRResNet(num_feat=64, num_block=1).state_dict()
    state = {k.replace("body.0.", "body.127."): v for k, v in wide.items()}
    with pytest.raises(CheckpointError, match=r"would have more than [\d,]+ parameters but the file holds"):
        import_state(state)
    assert time.perf_counter() - start < 2.0


def test_safetensors_and_lightning_style_wrappers_are_read(tmp_path):
    from safetensors.torch import save_file

    ref = trained_looking(BasicSRMSRResNet(num_feat=8, num_block=2, upscale=4))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "g.safetensors")
    torch.save(
        {"state_dict": {f"generator.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, tmp_path / "g.ckpt"
    )
    x = torch.rand(1, 3, 9, 11)
    with torch.inference_mode():
        for name in ("g.safetensors", "g.ckpt"):
            ours, meta = load_file(tmp_path / name)
            assert meta["arch"] == "msrresnet" and (ours(x) - ref(x)).abs().max() <= 1e-5
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_file(tmp_path / "bad.safetensors")


def test_the_block_generator_with_its_tanh_output_computes_what_it_computed_there(tmp_path):
    """leftthomas/SRGAN's netG: block1..block8, one-slope PReLUs, conv biases before each
    BatchNorm, (tanh(x) + 1) / 2 out. A plain .pth state dict with no wrapper."""
    for scale in (2, 4):
        ref = with_conv_biases(trained_looking(LeftthomasGenerator(scale_factor=scale, channels=16)))
        torch.save(ref.state_dict(), tmp_path / "netG_epoch_4_100.pth")
        ours, meta = load_file(tmp_path / "netG_epoch_4_100.pth")
        assert meta == {"arch": "srresnet", "layout": "srgan-blocks"}
        assert ours.spec.output == "tanh" and ours.spec.num_blocks == 5 and ours.spec.scale == scale
        x = torch.rand(2, 3, 10, 13)
        with torch.inference_mode():
            expected = ref(x)
            assert (ours(x) - expected).abs().max() <= 1e-5
            assert (inference_form(ours)(x) - expected).abs().max() <= 1e-5
            assert (
                upscale_tiled(inference_form(ours), x, scale, tile=6, pad=ours.receptive_radius) - expected
            ).abs().max() <= 1e-5
        # Saved as ours, the tanh output is part of the spec: loading it back guesses nothing.
        save_generator(tmp_path / "generator.pt", ours, meta)
        again, _ = load_file(tmp_path / "generator.pt")
        with torch.inference_mode():
            assert again.spec == ours.spec and (again(x) - expected).abs().max() <= 1e-5


def _rrdb(scale: int, blocks: int = 2, features: int = 16, growth: int = 32) -> RRDBNet:
    model = RRDBNet(
        GeneratorSpec(
            scale=scale, num_blocks=blocks, num_features=features, growth=growth, batch_norm=False, arch="rrdbnet"
        )
    )
    torch.manual_seed(scale)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return model.eval()


@pytest.mark.parametrize("scale", [4, 2])
def test_an_rrdbnet_checkpoint_computes_what_spandrels_esrgan_computes(tmp_path, scale):
    """Real-ESRGAN x4plus and x2plus (pixel-unshuffle) in BasicSR's names, and the original
    ESRGAN release's sequential names, against spandrel's own RRDBNet forward."""
    import spandrel

    ref = _rrdb(scale)
    torch.save({"params_ema": ref.state_dict()}, tmp_path / "RealESRGAN_x4plus.pth")
    ours, meta = load_file(tmp_path / "RealESRGAN_x4plus.pth")
    assert meta["arch"] == "rrdbnet" and ours.spec.scale == scale and ours.spec.num_blocks == 2
    theirs = spandrel.ModelLoader().load_from_state_dict({"params_ema": ref.state_dict()})
    assert theirs.architecture.id == "ESRGAN" and theirs.scale == scale
    x = torch.rand(1, 3, 12, 14)
    with torch.inference_mode():
        expected = theirs.model(x)
        assert (ours(x) - expected).abs().max() <= 1e-5
        tiled = upscale_tiled(ours, x, scale, tile=6, pad=ours.receptive_radius)
        assert (tiled - expected).abs().max() <= 1e-5
    if scale == 4:
        original = {}
        for key, value in ref.state_dict().items():
            for old, new in (("conv_first.", "model.0."), ("conv_body.", "model.1.sub.2."), ("conv_up1.", "model.3."), ("conv_up2.", "model.6."), ("conv_hr.", "model.8."), ("conv_last.", "model.10.")):  # fmt: skip
                key = key.replace(old, new) if key.startswith(old) else key
            if key.startswith("body."):
                n, rdb, conv, kind = key.split(".")[1:]
                key = f"model.1.sub.{n}.RDB{rdb[-1]}.{conv}.0.{kind}"
            original[key] = value
        again, _ = import_state(original)
        with torch.inference_mode():
            assert (again(x) - expected).abs().max() <= 1e-5


def test_an_rrdbnet_of_any_growth_loads_and_an_odd_input_is_padded_as_real_esrgan_pads():
    ref = _rrdb(2, blocks=1, features=8, growth=4)
    ours, _ = import_state(ref.state_dict())
    assert ours.spec.growth == 4
    x = torch.rand(1, 3, 7, 9)  # not a multiple of the x2 fold
    with torch.inference_mode():
        assert ours(x).shape == (1, 3, 14, 18) and (ours(x) - ref(x)).abs().max() <= 1e-6


def test_a_swinir_checkpoint_runs_as_spandrel_runs_it_and_tiles_with_overlap(tmp_path):
    import spandrel
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    torch.manual_seed(0)
    sw = SwinIR(upscale=2, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2], embed_dim=12, num_heads=[2], mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv").eval()  # fmt: skip
    torch.save({"params": sw.state_dict()}, tmp_path / "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2.pth")
    ours, meta = load_file(tmp_path / "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2.pth")
    assert meta["arch"] == "spandrel:SwinIR" and ours.spec.scale == 2 and ours.attention
    theirs = spandrel.ModelLoader().load_from_state_dict({"params": sw.state_dict()})
    x = torch.rand(1, 3, 21, 18)
    with torch.inference_mode():
        expected = theirs(x)  # clamped to [0, 1] there; our upscaler clamps too
        assert (ours(x).clamp(0, 1) - expected).abs().max() <= 1e-5
    # Saved as ours and loaded back: spandrel must see the same architecture.
    save_generator(tmp_path / "generator.pt", ours, meta)
    again, _ = load_file(tmp_path / "generator.pt")
    with torch.inference_mode():
        assert again.spec == ours.spec and (again(x).clamp(0, 1) - expected).abs().max() <= 1e-5


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
    ours, _ = import_state({"params": theirs.state_dict()})
    x = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5
