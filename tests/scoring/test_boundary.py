"""Boundary IoU and trimap counts against SciPy computations written from
the papers' definitions, and the device's batched form against the host's."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxseg.scoring import boundary

IGNORE = 255
SQUARE = np.ones((3, 3), bool)


def _band_reference(mask: np.ndarray, d: int) -> np.ndarray:
  """Cheng et al.'s band: the mask minus its erosion by d 3×3 steps, the
  image border counting as background."""
  return mask & ~ndimage.binary_erosion(mask, SQUARE, iterations=d, border_value=0)


def _boundary_reference(label, prediction, num_classes, d):
  valid = label != IGNORE
  counts = np.zeros((num_classes, 2), np.int64)
  for c in range(num_classes):
    truth = _band_reference(valid & (label == c), d)
    predicted = _band_reference(valid & (prediction == c), d)
    counts[c] = (np.sum(truth & predicted), np.sum(truth | predicted))
  return counts


def _trimap_reference(label, prediction, num_classes, widths):
  h, w = label.shape
  edge = np.zeros((h, w), bool)
  for y in range(h):
    for x in range(w):
      for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        if 0 <= y + dy < h and 0 <= x + dx < w and label[y + dy, x + dx] != label[y, x]:
          edge[y, x] = True
  out = np.zeros((len(widths), num_classes, num_classes), np.int64)
  for i, width in enumerate(widths):
    band = ndimage.binary_dilation(edge, SQUARE, iterations=width) & (label != IGNORE)
    for t, p in zip(label[band], prediction[band], strict=True):
      out[i, t, p] += 1
  return out


def _blobs(rng, shape, num_classes, ignore_border: bool):
  """Label maps of a few rectangles over background, an ignore frame optionally."""
  label = np.zeros(shape, np.int64)
  for _ in range(4):
    c = rng.integers(1, num_classes - 1)  # The last class never appears.
    y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
    label[y : y + rng.integers(3, 14), x : x + rng.integers(3, 14)] = c
  if ignore_border:
    label[:2, :] = IGNORE
    label[:, -3:] = IGNORE
  return label


def _pair(seed, shape, num_classes=5, ignore_border=True):
  rng = np.random.default_rng(seed)
  label = _blobs(rng, shape, num_classes, ignore_border)
  prediction = np.where(label == IGNORE, 0, label)
  prediction = np.roll(prediction, (1, -2), axis=(0, 1))  # Edges off by a pixel or two.
  prediction[rng.random(shape) < 0.05] = rng.integers(0, num_classes)
  return label, prediction


def test_a_square_has_the_band_one_can_count():
  label = np.zeros((32, 32), np.int64)
  label[5:15, 8:18] = 1
  for d, ring in ((1, 100 - 64), (2, 100 - 36)):
    counts = boundary.boundary_counts_image(label, label, 2, IGNORE, d)
    assert counts[1].tolist() == [ring, ring]
    # Background's band: around the square, and along the image border.
    assert counts[0, 0] == _boundary_reference(label, label, 2, d)[0, 0]
  shifted = np.roll(label, 1, axis=1)
  counts = boundary.boundary_counts_image(label, shifted, 2, IGNORE, 1)
  # Left and right columns move off the ring; top and bottom rows overlap in 9 of 10.
  assert counts[1, 1] - counts[1, 0] > 0
  assert boundary.boundary_scores(counts)["biou"][1] == counts[1, 0] / counts[1, 1]


def test_band_width_is_two_percent_of_the_diagonal():
  assert boundary.boundary_width(64, 64) == 2
  assert boundary.boundary_width(512, 512) == 14
  assert boundary.boundary_width(10, 10) == 1
  assert list(boundary.boundary_width(np.array([64, 97]), np.array([64, 75]))) == [2, 2]


@pytest.mark.parametrize("shape", [(31, 45), (40, 40), (17, 64)])
@pytest.mark.parametrize("d", [None, 1, 3])
def test_boundary_counts_equal_the_reference(shape, d):
  label, prediction = _pair(0, shape)
  width = int(boundary.boundary_width(*shape)) if d is None else d
  want = _boundary_reference(label, prediction, 5, width)
  got = boundary.boundary_counts_image(label, prediction, 5, IGNORE, d)
  np.testing.assert_array_equal(got, want)
  assert got[4].tolist() == [0, 0]  # Absent from both: no band, no score.
  scores = boundary.boundary_scores(got)
  assert np.isnan(scores["biou"][4])
  ratios = want[:, 0][want[:, 1] > 0] / want[:, 1][want[:, 1] > 0]
  assert abs(scores["mbiou"] - ratios.mean()) <= 1e-12


@pytest.mark.parametrize("shape", [(31, 45), (20, 20)])
def test_trimap_counts_equal_the_reference(shape):
  label, prediction = _pair(1, shape)
  widths = (1, 2, 4)
  want = _trimap_reference(label, prediction, 5, widths)
  got = boundary.trimap_confusion_image(label, prediction, 5, IGNORE, widths)
  np.testing.assert_array_equal(got, want)
  rows = boundary.trimap_scores(got, widths)["trimap"]
  assert [r["width"] for r in rows] == [1, 2, 4]
  assert abs(rows[0]["aacc"] - np.trace(want[0]) / want[0].sum()) <= 1e-12


def test_device_batch_equals_the_images_summed():
  """Images of different sizes padded into one batch (ignore in the padding),
  each with its own band width, as evaluation during training scores them."""
  shapes = [(31, 45), (40, 37), (24, 48)]
  pairs = [_pair(seed, shape) for seed, shape in enumerate(shapes)]
  h, w = 40, 48
  label = np.full((len(pairs), h, w), IGNORE, np.int64)
  prediction = np.zeros((len(pairs), h, w), np.int64)
  inside = np.zeros((len(pairs), h, w), bool)
  for i, ((truth, predicted), shape) in enumerate(zip(pairs, shapes, strict=True)):
    label[i, : shape[0], : shape[1]] = truth
    prediction[i, : shape[0], : shape[1]] = predicted
    inside[i, : shape[0], : shape[1]] = True
  valid = label != IGNORE
  d = boundary.boundary_width(*np.asarray(shapes).T)
  got = boundary.boundary_counts(
    jnp.asarray(label), jnp.asarray(prediction), jnp.asarray(valid), 5, jnp.asarray(d)
  )
  want = sum(boundary.boundary_counts_image(t, p, 5, IGNORE, None) for t, p in pairs)
  np.testing.assert_array_equal(np.asarray(got), want)
  widths = (1, 3, 8)
  got = boundary.trimap_confusion(
    jnp.asarray(label), jnp.asarray(prediction), jnp.asarray(valid), jnp.asarray(inside), 5,
    widths,
  )  # fmt: skip
  want = sum(boundary.trimap_confusion_image(t, p, 5, IGNORE, widths) for t, p in pairs)
  np.testing.assert_array_equal(np.asarray(got), want)
