"""The check every export passes as it is written (`export.parity`)."""

import numpy as np
import pytest

from jaxseg.data import preprocessing
from jaxseg.export import parity

NORM = preprocessing.IMAGENET


def _logits(images):
  """A stand-in network: per-pixel logits from the pixel values."""
  x = images.astype(np.float32) / 255.0
  return np.concatenate([x, 1.0 - x], axis=-1)


def _off(where):
  """An export equal to `_logits` except by 0.5 at the pixels `where` marks."""

  def run(images):
    logits = _logits(images)
    mask = np.zeros(logits.shape[1:3], bool)
    mask[where] = True
    logits[:, mask] += 0.5
    return logits

  return run


def test_a_few_moved_values_pass_and_are_counted():
  """SegNet's unpooling may move a value one pixel where two maxima tie to
  1e-7 under another runtime's rounding: one pixel of a 64×64 image passes
  and is reported."""
  check = parity.check(_off((5, 7)), _logits, NORM, [(1, 64, 64)], "onnx")
  assert check["max_abs_diff"] == pytest.approx(0.5)
  assert check["share_beyond_tolerance"] == pytest.approx(1 / 64**2)


@pytest.mark.parametrize("where", [(slice(None), -1), (0, slice(None)), (slice(None), slice(None))])
def test_a_systematic_difference_fails(where):
  """A wrong last column or first row (padding, cropping, a resize's edge)
  is more than 0.1% of the pixels: the export fails, naming the share."""
  with pytest.raises(RuntimeError, match=r"onnx export differs .* at [0-9.]+% of the pixels"):
    parity.check(_off(where), _logits, NORM, [(1, 64, 64)], "onnx")


def test_an_equal_export_passes_with_nothing_beyond():
  check = parity.check(_logits, _logits, NORM, [(2, 33, 40)], "stablehlo")
  assert check["max_abs_diff"] == 0.0 and check["share_beyond_tolerance"] == 0.0
