"""The paper's SRResNet (with BatchNorm) as two common PyTorch reimplementations save it, run
as srgan.generator.SRResNet.

``srgan-pytorch``  Lornatang/SRGAN-PyTorch: conv1 (or conv_block1), trunk.N.rcb.0-4,
                   conv2 (conv_block2), upsampling.N.upsample_block.0/2, conv3 (conv_block3);
                   files hold {'state_dict': ...} (or 'ema_state_dict'), keys possibly
                   prefixed by torch.compile's '_orig_mod.' or DDP's 'module.'.
``srgan-blocks``   the block1..block8 generator of the widely used SRGAN reimplementation
                   (leftthomas/SRGAN, ``netG_epoch_4_100.pth``): block1 = 9x9 conv + PReLU,
                   block2..block(B+1) residual blocks, block(B+2) conv + BN closing the
                   trunk, block(B+3) the x2 sub-pixel stages and the 9x9 tail; output
                   (tanh(x) + 1) / 2, which becomes the spec's ``output = "tanh"``.

Both use nn.PReLU() (one slope), which becomes per-channel PReLUs holding that slope. The
block generator's convolutions before a BatchNorm carry a bias; in eval mode a bias b
before a BatchNorm with running mean m is the BatchNorm with running mean m - b (exact), and
in training mode a batch's mean removes it anyway, so it folds into the running mean.
"""

from __future__ import annotations

import re

from srgan.archs.family import Family, blocks, load_spec, rename
from srgan.generator import GeneratorSpec

WB = r"\.(?:weight|bias)"
BN = r"\.(?:weight|bias|running_mean|running_var|num_batches_tracked)"


def _per_channel(mapped: dict, features: int) -> dict:
    """nn.PReLU()'s single slope spread over every channel."""
    for key, value in mapped.items():
        if (key == "head.1.weight" or key.endswith("act.weight")) and value.numel() == 1:
            mapped[key] = value.reshape(1).expand(features).clone()
    return mapped


def build_lornatang(state: dict) -> tuple:
    state = {re.sub(r"^conv_block([123])\.", r"conv\1.", k): v for k, v in state.items() if k != "n_averaged"}
    head, tail = state["conv1.0.weight"], state["conv3.weight"]
    features = head.shape[0]
    spec = GeneratorSpec(
        scale=2 ** blocks(state, r"upsampling\.(\d+)\."),
        in_channels=head.shape[1],
        out_channels=tail.shape[0],
        num_blocks=blocks(state, r"trunk\.(\d+)\."),
        num_features=features,
        batch_norm=True,
    )
    mapped = rename(state, [
        (r"^conv1\.0\.", "head.0."), (r"^conv1\.1\.", "head.1."),
        (r"^trunk\.(\d+)\.rcb\.0\.", r"body.\1.conv1."), (r"^trunk\.(\d+)\.rcb\.1\.", r"body.\1.bn1."), (r"^trunk\.(\d+)\.rcb\.2\.", r"body.\1.act."),
        (r"^trunk\.(\d+)\.rcb\.3\.", r"body.\1.conv2."), (r"^trunk\.(\d+)\.rcb\.4\.", r"body.\1.bn2."),
        (r"^conv2\.0\.", "body_tail.0."), (r"^conv2\.1\.", "body_tail.1."),
        (r"^upsampling\.(\d+)\.upsample_block\.0\.", r"upsample.\1.conv."), (r"^upsampling\.(\d+)\.upsample_block\.2\.", r"upsample.\1.act."),
        (r"^conv3\.", "tail."),
    ])  # fmt: skip
    return load_spec(
        spec, _per_channel(mapped, features), "SRGAN-PyTorch SRResNet checkpoint", {"layout": "srgan-pytorch"}
    )


def _block_numbers(state: dict) -> list[int]:
    return sorted({int(m.group(1)) for k in state for m in [re.match(r"block(\d+)\.", k)] if m})


def build_blocks(state: dict) -> tuple:
    numbers = _block_numbers(state)
    last = numbers[-1]
    close, residual = last - 1, list(range(2, last - 1))
    head, features = state["block1.0.weight"], state["block1.0.weight"].shape[0]
    stages = blocks(state, rf"block{last}\.(\d+)\.conv\.weight")
    tail = f"block{last}.{stages}."
    spec = GeneratorSpec(
        scale=2**stages,
        in_channels=head.shape[1],
        out_channels=state[tail + "weight"].shape[0],
        num_blocks=len(residual),
        num_features=features,
        batch_norm=True,
        output="tanh",
    )
    rules = [(r"^block1\.0\.", "head.0."), (r"^block1\.1\.", "head.1.")]
    for i, n in enumerate(residual):
        rules += [(rf"^block{n}\.(conv[12]|bn[12])\.", rf"body.{i}.\1."), (rf"^block{n}\.prelu\.", f"body.{i}.act.")]
    rules += [(rf"^block{close}\.0\.", "body_tail.0."), (rf"^block{close}\.1\.", "body_tail.1.")]
    rules += [
        (rf"^block{last}\.(\d+)\.conv\.", r"upsample.\1.conv."),
        (rf"^block{last}\.(\d+)\.prelu\.", r"upsample.\1.act."),
    ]
    rules += [(rf"^{re.escape(tail)}", "tail.")]
    mapped = rename(state, rules)
    # Fold each bias before a BatchNorm into that BatchNorm's running mean (module docstring).
    for conv, bn in [(f"body.{i}.conv{j}", f"body.{i}.bn{j}") for i in range(len(residual)) for j in (1, 2)] + [
        ("body_tail.0", "body_tail.1")
    ]:
        bias = mapped.pop(f"{conv}.bias", None)
        if bias is not None and f"{bn}.running_mean" in mapped:
            mapped[f"{bn}.running_mean"] = mapped[f"{bn}.running_mean"] - bias
    return load_spec(
        spec, _per_channel(mapped, features), "SRGAN block1..block8 generator checkpoint", {"layout": "srgan-blocks"}
    )


def _blocks_in_order(state: dict) -> bool:
    numbers = _block_numbers(state)
    return len(numbers) >= 4 and numbers == list(range(1, numbers[-1] + 1))


LORNATANG = Family(
    name="SRResNet (SRGAN-PyTorch)",
    layout="srgan-pytorch",
    required=(r"conv(?:_block)?1\.0\.weight", r"trunk\.\d+\.rcb\.0\.weight", r"upsampling\.\d+\.upsample_block\.0\.weight", r"conv(?:_block)?3\.weight"),
    known=(
        rf"conv(?:_block)?1\.0{WB}", r"conv(?:_block)?1\.1\.weight", r"trunk\.\d+\.rcb\.[03]\.weight", rf"trunk\.\d+\.rcb\.[14]{BN}",
        r"trunk\.\d+\.rcb\.2\.weight", r"conv(?:_block)?2\.0\.weight", rf"conv(?:_block)?2\.1{BN}",
        rf"upsampling\.\d+\.upsample_block\.0{WB}", r"upsampling\.\d+\.upsample_block\.2\.weight", rf"conv(?:_block)?3{WB}", "n_averaged",
    ),
    build=build_lornatang,
)  # fmt: skip

BLOCKS = Family(
    name="SRGAN block1..block8 generator (tanh output)",
    layout="srgan-blocks",
    required=(r"block1\.0\.weight", r"block1\.1\.weight", r"block\d+\.conv1\.weight", r"block\d+\.bn1\.running_mean", r"block\d+\.\d+\.conv\.weight"),
    known=(
        rf"block1\.0{WB}", r"block1\.1\.weight", rf"block\d+\.conv[12]{WB}", rf"block\d+\.bn[12]{BN}", r"block\d+\.prelu\.weight",
        rf"block\d+\.0{WB}", rf"block\d+\.1{BN}", rf"block\d+\.\d+\.conv{WB}", r"block\d+\.\d+\.prelu\.weight", rf"block\d+\.\d+{WB}",
    ),
    build=build_blocks,
    accepts=_blocks_in_order,
)  # fmt: skip
