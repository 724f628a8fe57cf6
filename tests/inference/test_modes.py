"""Inference modes: the identities they must satisfy and a reference for slide."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import inference
from jaxseg.models import pspnet


@pytest.fixture(scope="module")
def tiny_predict_fn():
  model = pspnet._tiny(num_classes=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  return inference.make_predict_fn(model, variables)


def _image(h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _tile_dependent_fn(tiles):
  """Logits that depend on the pixel and its place in the tile, so that
  overlapping tiles disagree and averaging matters."""
  n, h, w, _ = tiles.shape
  yy, xx = np.mgrid[:h, :w]
  base = tiles.astype(np.float32) / 64
  logits = np.stack([base[..., 0] + yy / h, base[..., 1] - xx / w, base[..., 2]], -1)
  return logits.reshape(n, h, w, 3)  # Used as logits by slide (it averages them).


def test_tile_starts_cover_the_axis_with_the_last_tile_flush():
  assert inference.tile_starts(10, 16, 8) == [0]
  assert inference.tile_starts(16, 16, 8) == [0]
  assert inference.tile_starts(20, 16, 8) == [0, 4]
  assert inference.tile_starts(100, 32, 24) == [0, 24, 48, 68]


def test_slide_averages_overlapping_tiles_like_a_full_size_reference():
  image = _image(45, 70)
  crop, stride = (16, 24), (10, 17)
  got = inference.slide(_tile_dependent_fn, image, crop_size=crop, stride=stride, tile_batch=3)
  acc = np.zeros((45, 70, 3))
  count = np.zeros((45, 70, 1))
  for y in range(0, 45 - 16 + 10, 10):
    for x in range(0, 70 - 24 + 17, 17):
      y0, x0 = min(y, 45 - 16), min(x, 70 - 24)
      acc[y0 : y0 + 16, x0 : x0 + 24] += _tile_dependent_fn(
        image[None, y0 : y0 + 16, x0 : x0 + 24]
      )[0]
      count[y0 : y0 + 16, x0 : x0 + 24] += 1
  ref = jax.nn.softmax(acc / count, axis=-1)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  labels = inference.slide_labels(_tile_dependent_fn, image, crop_size=crop, stride=stride)
  np.testing.assert_array_equal(labels, np.asarray(ref).argmax(-1))


def test_slide_with_one_tile_covering_the_image_equals_whole(tiny_predict_fn):
  image = _image(40, 56, seed=1)
  whole = inference.whole(tiny_predict_fn, image, size_multiple=1)
  slide = inference.slide(tiny_predict_fn, image, crop_size=(40, 56), stride=(40, 56))
  np.testing.assert_allclose(slide, whole, rtol=1e-5, atol=1e-6)


def test_tta_with_scale_one_and_no_flip_equals_plain(tiny_predict_fn):
  image = _image(37, 50, seed=2)
  plain = inference.whole(tiny_predict_fn, image)
  tta = inference.predict_probs(tiny_predict_fn, image, scales=(1.0,), flip=False)
  np.testing.assert_array_equal(tta, plain)


def test_flip_tta_of_a_flip_symmetric_model_changes_nothing():
  def symmetric(images):  # A horizontally symmetric blur, then a per-pixel map.
    x = images.astype(np.float32)
    x = (np.roll(x, 1, axis=2) + x + np.roll(x, -1, axis=2))[:, 1:-1]
    x = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
    return x / 100

  image = _image(20, 33, seed=3)
  plain = inference.predict_probs(symmetric, image, size_multiple=1)
  flipped = inference.predict_probs(symmetric, image, flip=True, size_multiple=1)
  np.testing.assert_allclose(flipped, plain, rtol=1e-6, atol=1e-7)


def test_multi_scale_returns_probabilities_at_the_original_size(tiny_predict_fn):
  image = _image(30, 41, seed=4)
  probs = inference.predict_probs(
    tiny_predict_fn, image, mode="slide", scales=(0.5, 1.25), flip=True,
    crop_size=(24, 24), stride=(16, 16),
  )  # fmt: skip
  assert probs.shape == (30, 41, 4)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_whole_batch_of_different_sizes_matches_whole_in_the_shared_shape(tiny_predict_fn):
  images = [_image(30, 41, seed=5), _image(64, 20, seed=6)]
  batch = inference.whole_batch(tiny_predict_fn, images, size_multiple=32)
  for image, probs in zip(images, batch, strict=True):
    assert probs.shape == (*image.shape[:2], 4)
    # Alone, padded to the batch's 64x64 shape, each image gives the same result.
    padded = inference.pad_to(image, 64, 64)
    alone = inference.whole(tiny_predict_fn, padded, size_multiple=1)[
      : image.shape[0], : image.shape[1]
    ]
    np.testing.assert_allclose(probs, alone, rtol=1e-5, atol=1e-6)
