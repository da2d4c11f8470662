"""The MLflow model checks integer input as it checks every read: plain integer lists (int64,
as pandas and MLflow hand them over) of values >= 0 are read, negative or out-of-range values
are refused, never clipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import DataError
from pipeline.models.pyfunc import GeneratorModel
from srgan.generator import SRResNet


def _model(meta: dict) -> GeneratorModel:
    torch.manual_seed(0)
    return GeneratorModel(SRResNet(scale=2, in_channels=1, out_channels=1, num_blocks=1, num_features=8).eval(), meta)


PIXELS = np.random.default_rng(0).integers(0, 4096, (1, 1, 8, 8))
NEGATIVE = PIXELS.copy()
NEGATIVE[0, 0, 3, 4] = -5


def test_an_int64_list_of_stored_values_is_read_by_the_models_data_range():
    model = _model({"data_range": 4095})
    as_json = np.asarray(PIXELS.tolist())
    assert as_json.dtype == np.int64
    assert np.array_equal(model.predict(as_json), model.predict(PIXELS.astype(np.float32) / 4095))


def test_an_int64_list_of_8_bit_values_needs_no_data_range():
    eight = PIXELS % 256
    model = _model({})
    assert np.array_equal(model.predict(np.asarray(eight.tolist())), model.predict(eight.astype(np.uint8)))


@pytest.mark.parametrize(
    "values, message",
    [
        (NEGATIVE, r"holds negative values \(down to -5\)"),
        (PIXELS.astype(np.uint16) + 100, r"has values from .* outside \[0, 4095\] \(the model's data_range\)"),
        (PIXELS.astype(np.float32), r"outside \[0, 1\]"),
    ],
)
def test_negative_and_out_of_range_input_is_refused(values, message):
    with pytest.raises(DataError, match=message):
        _model({"data_range": 4095}).predict(values)
