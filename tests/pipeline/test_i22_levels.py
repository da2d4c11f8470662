"""An integer image's quantisation levels are its range's span rounded, never truncated: the
top level of a range whose span float arithmetic leaves a hair short is kept."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.reader import Range, StoredImage


@pytest.mark.parametrize(
    "low, high, levels",
    [(0.0, 4095.0, 4095), (0.1, 4095.0, 4095), (0.0, 4094.9999999, 4095), (-1024.0, 3071.0, 4095), (0.0, 255.0, 255)],
)
def test_levels_are_the_rounded_span(low, high, levels):
    assert StoredImage(np.zeros((2, 2, 1), np.uint16), Range(low, high, "test")).levels == levels


def test_float_images_have_no_levels():
    assert StoredImage(np.zeros((2, 2, 1), np.float32), Range(0.0, 1.0, "test")).levels == 0
