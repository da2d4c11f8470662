"""BasicSR's MSRResNet (xinntao/BasicSR ``archs/srresnet_arch.py``; mmsr's older names
``recon_trunk.N`` and ``HRconv`` too), run as srgan.msrresnet.MSRResNet.

Keys: conv_first, body.N.conv1/conv2, upconv1[, upconv2], conv_hr, conv_last; no BatchNorm.
The scale is 4 with upconv2, else sqrt(upconv1's outputs / features) (2 or 3).
"""

from __future__ import annotations

import math
import re

from srgan.archs.family import Family, blocks, load_spec, rename
from srgan.generator import GeneratorSpec

WB = r"\.(?:weight|bias)"


def _normal(state: dict) -> dict:
    return {re.sub(r"^recon_trunk\.", "body.", k).replace("HRconv.", "conv_hr."): v for k, v in state.items()}


def build(state: dict) -> tuple:
    state = _normal(state)
    head, tail, up1 = state["conv_first.weight"], state["conv_last.weight"], state["upconv1.weight"]
    features = head.shape[0]
    scale = 4 if "upconv2.weight" in state else round(math.sqrt(up1.shape[0] / max(features, 1)))
    spec = GeneratorSpec(
        scale=scale,
        in_channels=head.shape[1],
        out_channels=tail.shape[0],
        num_blocks=blocks(state, r"body\.(\d+)\."),
        num_features=features,
        batch_norm=False,
        arch="msrresnet",
    )
    mapped = rename(
        state,
        [
            (r"^conv_first\.", "head."),
            (r"^conv_hr\.", "hr_conv."),
            (r"^conv_last\.", "tail."),
            (r"^upconv1\.", "upsample.0.conv."),
            (r"^upconv2\.", "upsample.1.conv."),
        ],
    )
    return load_spec(spec, mapped, "BasicSR MSRResNet checkpoint", {"layout": "basicsr"})


FAMILY = Family(
    name="MSRResNet (BasicSR)",
    layout="basicsr",
    required=(r"conv_first\.weight", r"(?:body|recon_trunk)\.\d+\.conv1\.weight", r"upconv1\.weight", r"(?:conv_hr|HRconv)\.weight", r"conv_last\.weight"),
    known=(rf"conv_first{WB}", rf"(?:body|recon_trunk)\.\d+\.conv[12]{WB}", rf"upconv[12]{WB}", rf"(?:conv_hr|HRconv){WB}", rf"conv_last{WB}"),
    build=build,
)  # fmt: skip
