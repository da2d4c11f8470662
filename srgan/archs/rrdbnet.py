"""RRDBNet: ESRGAN, BSRGAN, Real-ESRGAN x4plus and x2plus, run as srgan.rrdbnet.RRDBNet.

Three generations of key names are read: BasicSR's (conv_first, body.N.rdbK.convJ,
conv_body, conv_up1/2, conv_hr, conv_last, as Real-ESRGAN ships them), the 2019 ESRGAN
repository's (RRDB_trunk.N.RDBK.convJ, trunk_conv, upconv1/2, HRconv) and the original
ESRGAN release's sequential ones (model.0, model.1.sub.N.RDBK.convJ.0, model.1.sub.B,
model.3, model.6, model.8, model.10: x4 only; other original layouts go to spandrel).
The scale follows from conv_first's inputs: as many bands as the output x4, four times as
many x2 (pixel-unshuffle by 2, Real-ESRGAN x2plus), sixteen times x1.
"""

from __future__ import annotations

from srgan.archs.checkpoint import CheckpointError
from srgan.archs.family import Family, blocks, load_spec, rename
from srgan.generator import GeneratorSpec

WB = r"\.(?:weight|bias)"


def _normal(state: dict) -> dict:
    """`state` in BasicSR's names."""
    if "model.0.weight" in state:
        trunk = blocks(state, r"model\.1\.sub\.(\d+)\.RDB")
        return rename(
            state,
            [
                (r"^model\.0\.", "conv_first."),
                (rf"^model\.1\.sub\.{trunk}\.", "conv_body."),
                (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3."),
                (r"^model\.3\.", "conv_up1."),
                (r"^model\.6\.", "conv_up2."),
                (r"^model\.8\.", "conv_hr."),
                (r"^model\.10\.", "conv_last."),
            ],
        )
    return rename(
        state,
        [
            (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
            (r"^trunk_conv\.", "conv_body."),
            (r"^upconv([12])\.", r"conv_up\1."),
            (r"^HRconv\.", "conv_hr."),
        ],
    )


def build(state: dict) -> tuple:
    state = _normal(state)
    head, tail = state["conv_first.weight"], state["conv_last.weight"]
    folded, bands = head.shape[1], tail.shape[0]
    scale = {bands: 4, 4 * bands: 2, 16 * bands: 1}.get(folded)
    if scale is None:
        raise CheckpointError(
            f"not an RRDBNet checkpoint this project can run: conv_first takes {folded} bands for a {bands}-band output "
            "(x4 takes as many, x2 four times, x1 sixteen times)"
        )
    spec = GeneratorSpec(
        scale=scale,
        in_channels=bands,
        out_channels=bands,
        num_blocks=blocks(state, r"body\.(\d+)\."),
        num_features=head.shape[0],
        batch_norm=False,
        arch="rrdbnet",
        growth=state["body.0.rdb1.conv1.weight"].shape[0] if "body.0.rdb1.conv1.weight" in state else 32,
    )
    return load_spec(spec, state, "RRDBNet checkpoint", {"layout": "esrgan"})


def _x4_original(state: dict) -> bool:
    """The original ESRGAN release's sequential layout is read here only for x4 (model.10 last)."""
    return "model.0.weight" not in state or "model.10.weight" in state


FAMILY = Family(
    name="RRDBNet (ESRGAN, Real-ESRGAN)",
    layout="esrgan",
    required=(r"(?:conv_first|model\.0)\.weight", r"(?:body\.\d+\.rdb1|RRDB_trunk\.\d+\.RDB1|model\.1\.sub\.\d+\.RDB1)\.conv1(?:\.0)?\.weight", r"(?:conv_last|model\.10)\.weight"),
    known=(
        rf"conv_first{WB}", rf"body\.\d+\.rdb[123]\.conv[1-5]{WB}", rf"conv_body{WB}", rf"conv_up[12]{WB}", rf"conv_hr{WB}", rf"conv_last{WB}",
        rf"RRDB_trunk\.\d+\.RDB[123]\.conv[1-5]{WB}", rf"trunk_conv{WB}", rf"upconv[12]{WB}", rf"HRconv{WB}",
        rf"model\.0{WB}", rf"model\.1\.sub\.\d+\.RDB[123]\.conv[1-5]\.0{WB}", rf"model\.1\.sub\.\d+{WB}", rf"model\.(?:3|6|8|10){WB}",
    ),
    build=build,
    accepts=_x4_original,
)  # fmt: skip
