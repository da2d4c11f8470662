"""Checkpoint files written to hurt, or by careless hands, are refused in one line naming the
file and the problem, quickly and without allocating far beyond the file's size (issue 24,
points 4 and 6)."""

import json
import os
import struct
import time
import zipfile

import pytest
import torch

from srgan.archs.checkpoint import CheckpointError
from srgan.archs.registry import load_file
from srgan.weights import WeightsError, load_generator, save_generator
from tests.helpers import BasicSRMSRResNet


def small_state() -> dict:
    torch.manual_seed(0)
    return BasicSRMSRResNet(num_feat=4, num_block=1).state_dict()


def refused(path, match: str) -> str:
    """The one-line message load_file refuses `path` with (it must name the file)."""
    with pytest.raises(CheckpointError, match=match) as caught:
        load_file(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and len(message) < 1000
    return message


def test_a_zip_whose_records_inflate_far_past_its_size_is_not_read(tmp_path):
    torch.save({"params": {"w": torch.zeros(4)}}, tmp_path / "plain.pth")
    values = 10_000_000  # 40 MB of zeros in a 40 KB file; 4 GB would fit in 4 MB
    with zipfile.ZipFile(tmp_path / "plain.pth") as source, zipfile.ZipFile(tmp_path / "bomb.pth", "w") as bomb:
        for record in source.infolist():
            data = source.read(record.filename)
            if record.filename.endswith("data.pkl"):
                claim = b"\x8a\x08" + struct.pack("<q", values)  # LONG1: the storage's and the tensor's size
                data = data.replace(b"cpuq\x08K\x04t", b"cpuq\x08" + claim + b"t").replace(
                    b"K\x04\x85", claim + b"\x85"
                )
            if record.filename.endswith("data/0"):
                data = bytes(4 * values)
            bomb.writestr(record.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    assert (tmp_path / "bomb.pth").stat().st_size < 100_000
    refused(tmp_path / "bomb.pth", "a zip whose records are compressed or larger than the file")


def test_a_zip_whose_records_claim_more_bytes_than_they_hold_is_refused(tmp_path):
    torch.save({"params": {"w": torch.zeros(4)}}, tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "plain.pth") as source, zipfile.ZipFile(tmp_path / "lies.pth", "w") as lies:
        for record in source.infolist():
            data = source.read(record.filename)
            if record.filename.endswith("data.pkl"):
                data = data.replace(b"cpuq\x08K\x04t", b"cpuq\x08\x8a\x08" + struct.pack("<q", 10**12) + b"t")
            lies.writestr(record.filename, data)
    refused(tmp_path / "lies.pth", r"not a PyTorch checkpoint \(RuntimeError: record size")


@pytest.mark.parametrize(
    "header",
    [
        struct.pack("<Q", 1 << 40) + b"{}",  # a header length of a terabyte
        (lambda h: struct.pack("<Q", len(h)) + h + bytes(4))(
            json.dumps({"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 4]}}).encode()
        ),
        (lambda h: struct.pack("<Q", len(h)) + h + bytes(4))(
            json.dumps({"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 4 * 10**10]}}).encode()
        ),
    ],
    ids=["huge-header", "huge-shape", "huge-offsets"],
)
def test_a_safetensors_file_claiming_huge_sizes_is_refused(tmp_path, header):
    (tmp_path / "lies.safetensors").write_bytes(header)
    refused(tmp_path / "lies.safetensors", "is not a readable safetensors file")


def test_a_view_repeating_one_value_is_not_taken_for_weights(tmp_path):
    # 4 bytes in the file, any shape: the sizes spandrel reads would otherwise be free to claim.
    state = small_state()
    state["body.0.conv1.weight"] = torch.zeros(1).as_strided((4, 4, 3, 3), (0, 0, 0, 0))
    torch.save({"params": state}, tmp_path / "repeats.pth")
    refused(
        tmp_path / "repeats.pth", r"key body.0.conv1.weight claims shape \(4, 4, 3, 3\) but its storage holds 4 bytes"
    )


def swinir_state() -> dict:
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    torch.manual_seed(0)
    return SwinIR(upscale=2, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2], embed_dim=12, num_heads=[2], mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv").eval().state_dict()  # fmt: skip


def test_a_spandrel_file_claiming_a_huge_attention_window_is_refused_before_building(tmp_path):
    # SwinIR's window size is read off relative_position_index's shape: a 60 KB file claiming
    # window 60 made spandrel build 3.6 GB of index buffers (window 100: about 25 GB).
    state, window = swinir_state(), 60
    for key in list(state):
        if key.endswith("relative_position_index"):
            state[key] = torch.zeros(1, dtype=torch.long).as_strided((window**2, window**2), (0, 0))
        if key.endswith("relative_position_bias_table"):
            state[key] = torch.zeros(1).as_strided(((2 * window - 1) ** 2, state[key].shape[1]), (0, 0))
    torch.save({"params": state}, tmp_path / "swinir_x2.pth")
    assert (tmp_path / "swinir_x2.pth").stat().st_size < 100_000
    start = time.perf_counter()
    refused(tmp_path / "swinir_x2.pth", "but its storage holds 4 bytes")
    assert time.perf_counter() - start < 1.0


def test_a_spandrel_file_that_does_not_load_is_refused_in_one_line(tmp_path):
    state = swinir_state()
    key = next(k for k in state if k.endswith("attn_mask"))
    state[key] = torch.zeros(16, 16, 17)  # 16 windows of 4 x 4, one column too many
    torch.save({"params": state}, tmp_path / "swinir_x2.pth")
    refused(tmp_path / "swinir_x2.pth", rf"looks like spandrel's SwinIR but does not load .*size mismatch for {key}")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_weights_of_a_type_that_is_not_float_are_refused_not_cast(tmp_path, dtype):
    state = {k: (v * 100).to(dtype) if v.is_floating_point() else v for k, v in small_state().items()}
    torch.save({"params": state}, tmp_path / "ints.pth")
    refused(tmp_path / "ints.pth", rf"holds {dtype} values where float weights belong")


def test_half_precision_weights_still_load():
    state = {k: v.half() if v.is_floating_point() else v for k, v in small_state().items()}
    from srgan.archs.registry import import_state

    model, _ = import_state(state)
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_infinite_weights_are_refused(tmp_path, value):
    state = small_state()
    state["body.0.conv2.weight"][0, 0, 0, 0] = value
    torch.save({"params": state}, tmp_path / "diverged.pth")
    refused(tmp_path / "diverged.pth", "key body.0.conv2.weight holds NaN or infinite values")


@pytest.mark.parametrize("form", ["sparse", "meta"])
def test_a_sparse_or_meta_tensor_is_refused(tmp_path, form):
    state = small_state()
    weight = state["body.0.conv1.weight"]
    state["body.0.conv1.weight"] = weight.to_sparse() if form == "sparse" else weight.to("meta")
    torch.save({"params": state}, tmp_path / "odd.pth")
    with pytest.warns() if form == "sparse" else open(os.devnull):  # torch's note on validating sparse tensors
        refused(tmp_path / "odd.pth", "key body.0.conv1.weight holds a .* tensor on .*, not dense weights")


def test_a_huge_key_is_refused_in_a_short_message(tmp_path):
    torch.save({"a" * 5_000_000: torch.zeros(1)}, tmp_path / "key.pth")
    refused(tmp_path / "key.pth", "has a key of 5,000,000 characters")


def test_a_torchscript_archive_is_named_and_no_weights_only_advice_is_passed_on(tmp_path):
    torch.jit.trace(BasicSRMSRResNet(num_feat=4, num_block=1), torch.rand(1, 3, 8, 8)).save(tmp_path / "ts.pth")
    message = refused(tmp_path / "ts.pth", "is a TorchScript archive")
    assert "weights_only" not in message


def test_an_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    refused(tmp_path / "empty.pth", r"is empty \(0 bytes\)")


def test_the_pickle_refusal_names_the_callable_it_would_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"params": Payload()}, tmp_path / "evil.pth")
    message = refused(tmp_path / "evil.pth", "is a pickle that may run code when loaded")
    assert "(it names posix.system)" in message


def test_a_plain_pickle_of_lists_says_it_holds_no_tensors_or_is_no_torch_file(tmp_path):
    import pickle

    lists = {"params": {k: v.tolist() for k, v in small_state().items()}}
    torch.save(lists, tmp_path / "lists.pth")
    refused(tmp_path / "lists.pth", "holds no tensors")
    (tmp_path / "pickled.pth").write_bytes(pickle.dumps(lists, protocol=4))
    with pytest.warns(UserWarning):  # torch's note on the pickle protocol
        refused(tmp_path / "pickled.pth", "not a PyTorch checkpoint .a pickle torch.save did not write")


def test_weights_nested_deeper_than_the_wrappers_looked_through_say_so(tmp_path):
    nested = small_state()
    for _ in range(5):
        nested = {"params": nested}
    torch.save(nested, tmp_path / "deep.pth")
    refused(tmp_path / "deep.pth", r"holds no tensors \(nested deeper than 3 wrappers\)")


def test_keys_that_are_not_strings_and_junk_beside_the_weights_do_not_crash(tmp_path):
    torch.save({1: torch.zeros(3), (2, 3): torch.zeros(2), "epoch": 3, "x": None}, tmp_path / "odd.pth")
    refused(tmp_path / "odd.pth", "matches no architecture tried")


def test_a_folder_or_a_symlink_loop_named_like_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "x.pth").mkdir()
    refused(tmp_path / "x.pth", "does not exist or is not a file")
    os.symlink(tmp_path / "b.pth", tmp_path / "a.pth")
    os.symlink(tmp_path / "a.pth", tmp_path / "b.pth")
    refused(tmp_path / "a.pth", "does not exist or is not a file")


def test_an_srgan_generator_file_is_held_to_the_same_rules(tmp_path):
    from srgan.generator import GeneratorSpec, build_generator

    model = build_generator(GeneratorSpec(scale=2, num_blocks=1, num_features=4, batch_norm=False))
    save_generator(tmp_path / "generator.pt", model)
    payload = torch.load(tmp_path / "generator.pt", weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.dim() == 4)
    for bad, match in [
        (torch.zeros(1).as_strided(payload["state_dict"][key].shape, (0,) * 4), "storage holds 4 bytes"),
        (torch.full_like(payload["state_dict"][key], float("nan")), "NaN or infinite"),
        (payload["state_dict"][key].to(torch.int64), "int64 values where float weights belong"),
    ]:
        torch.save({**payload, "state_dict": {**payload["state_dict"], key: bad}}, tmp_path / "bad.pt")
        with pytest.raises(WeightsError, match=match):
            load_generator(tmp_path / "bad.pt")


def test_the_cli_refuses_a_hostile_block_count_in_one_line_at_once(tmp_path, capsys):
    from PIL import Image

    from pipeline.upscale import main

    state = {k.replace("body.0.", "body.999999."): v for k, v in small_state().items()}
    torch.save({"params": state}, tmp_path / "hostile.pth")
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    start = time.perf_counter()
    rc = main(
        ["--model", str(tmp_path / "hostile.pth"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    )
    assert time.perf_counter() - start < 2.0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "index 999999" in err[0]
    assert "hostile.pth" in err[0]


def test_a_spandrel_size_read_from_a_tensors_values_is_bounded_too():
    # FDAT reads its embedding width off the values of upsampler.MetaUpsample, not a shape.
    from spandrel.architectures.FDAT.__arch.fdat import FDAT

    from srgan.archs.registry import import_state

    torch.manual_seed(0)
    state = FDAT(embed_dim=16, num_groups=1, depth_per_group=2, num_heads=2, window_size=4, mid_dim=16, scale=2).state_dict()  # fmt: skip
    sizes = state["upsampler.MetaUpsample"].long()
    sizes[3] = 100_000  # embed_dim
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"spandrel's FDAT would have more than [\d,]+ parameters"):
        import_state({**state, "upsampler.MetaUpsample": sizes})
    assert time.perf_counter() - start < 1.0


def test_long_keys_under_the_bound_are_cut_short_in_the_message(tmp_path):
    torch.save({f"{'k' * 900}{i}": torch.zeros(1) for i in range(6)}, tmp_path / "keys.pth")
    refused(tmp_path / "keys.pth", "no family is close")
