"""Image and label stay pixel-aligned under every transform."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxseg.data import augment, preprocessing


def _blocks(h=24, w=20, seed=0, block=4):
  """Labels in square blocks of random classes; the image encodes each label in binary.

  Channel `c` is 220 where bit `c` of the label is set and 20 where not, so a
  bilinear blend of different labels is never a valid code.
  """
  rng = np.random.default_rng(seed)
  cells = rng.integers(0, 5, size=(h // block, w // block))
  label = np.kron(cells, np.ones((block, block), np.int64))
  bits = (label[..., None] >> np.arange(3)) & 1
  return (20 + 200 * bits).astype(np.uint8), label.astype(np.int32)


def _decode(image):
  """Inverse of the encoding: (labels, where the pixel is an exact code)."""
  bits = (image - 20) / 200
  exact = np.all(np.isclose(bits, np.round(bits), atol=1e-4), axis=-1)
  return (np.round(bits).astype(int) << np.arange(3)).sum(-1), exact


def _batch(key, *arrays, **kw):
  """`augment.augment_batch` of `arrays` (image, label[, size, base_scale]), jitted,
  with `augment.Augmentation(**kw)`."""
  settings = augment.Augmentation(**{"ignore_label": 255, **kw})
  fn = jax.jit(functools.partial(augment.augment_batch, settings=settings))
  return fn(key, *arrays)


def _augment(key, image, label, **kw):
  out_i, out_l = _batch(key, jnp.asarray(image)[None], jnp.asarray(label)[None], **kw)
  return np.asarray(out_i[0]), np.asarray(out_l[0])


def test_identity_when_no_scale_no_flip_full_crop():
  image, label = _blocks()
  out_i, out_l = _augment(
    jax.random.key(0), image, label, crop_size=(24, 20), scale_range=(1.0, 1.0), flip=False
  )
  np.testing.assert_array_equal(out_i, image.astype(np.float32))
  np.testing.assert_array_equal(out_l, label)


def test_flip_mirrors_image_and_label_together():
  image, label = _blocks()
  flips = 0
  for seed in range(8):
    out_i, out_l = _augment(
      jax.random.key(seed), image, label, crop_size=(24, 20), scale_range=(1.0, 1.0), flip=True
    )
    if np.array_equal(out_l, label[:, ::-1]):
      flips += 1
      np.testing.assert_array_equal(out_i, image[:, ::-1].astype(np.float32))
    else:
      np.testing.assert_array_equal(out_l, label)
      np.testing.assert_array_equal(out_i, image.astype(np.float32))
  assert 0 < flips < 8


def test_warp_label_equals_nearest_resize_crop_flip_reference():
  image, label = _blocks()
  sh, sw, oy, ox, ch, cw = 37, 29, 5, 3, 16, 18
  for flipped in (False, True):
    _, out_l = augment.warp(image, label, (sh, sw), (oy, ox), flipped, (ch, cw), 255)
    ref = np.asarray(Image.fromarray(label.astype(np.uint8)).resize((sw, sh), Image.NEAREST))
    ref = ref[oy : oy + ch, ox : ox + cw].astype(np.int32)
    ref = np.pad(ref, ((0, ch - ref.shape[0]), (0, cw - ref.shape[1])), constant_values=255)
    np.testing.assert_array_equal(np.asarray(out_l), ref[:, ::-1] if flipped else ref)


def test_warp_image_equals_bilinear_resize_then_crop_when_upscaling():
  image, label = _blocks()
  image = np.random.default_rng(1).integers(0, 256, size=image.shape).astype(np.uint8)
  sh, sw, oy, ox = 48, 30, 7, 4
  out_i, _ = augment.warp(image, label, (sh, sw), (oy, ox), False, (20, 16), 255)
  ref = jax.image.resize(image.astype(np.float32), (sh, sw, 3), "bilinear")
  np.testing.assert_allclose(
    np.asarray(out_i), np.asarray(ref)[oy : oy + 20, ox : ox + 16], atol=1e-3
  )


def test_crop_larger_than_image_is_padded_with_ignore_and_mean():
  image, label = _blocks()
  out_i, out_l = augment.warp(image, label, (12, 10), (0, 0), False, (16, 16), 255)
  out_i, out_l = np.asarray(out_i), np.asarray(out_l)
  assert np.all(out_l[12:] == 255) and np.all(out_l[:, 10:] == 255)
  assert np.all(out_l[:12, :10] != 255)
  np.testing.assert_allclose(out_i[12:], np.broadcast_to(preprocessing.MEAN_RGB, out_i[12:].shape))


def test_random_scale_crop_flip_keeps_image_and_label_aligned():
  image, label = _blocks(48, 48, block=8)
  for seed in range(6):
    out_i, out_l = _augment(
      jax.random.key(seed), image, label, crop_size=(32, 32), scale_range=(0.5, 2.0), flip=True
    )
    # Where the bilinear sample comes from a single block, the image encodes its label.
    decoded, exact = _decode(out_i)
    labelled = out_l != 255
    exact &= labelled
    assert exact.sum() > 0.5 * labelled.sum()
    np.testing.assert_array_equal(decoded[exact], out_l[exact])


def test_same_key_same_result_and_examples_differ():
  image, label = _blocks(48, 48)
  batch_i = jnp.asarray(np.stack([image, image]))
  batch_l = jnp.asarray(np.stack([label, label]))
  kw = dict(crop_size=(32, 32), scale_range=(0.5, 2.0), flip=True, ignore_label=255)
  a = _batch(jax.random.key(7), batch_i, batch_l, **kw)
  b = _batch(jax.random.key(7), batch_i, batch_l, **kw)
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1][0], a[1][1])


def test_padded_example_with_its_size_equals_the_unpadded_one():
  image, label = _blocks(24, 20)
  canvas_i = np.full((40, 36, 3), 7, np.uint8)  # Garbage where the padding is.
  canvas_l = np.full((40, 36), 3, np.int32)
  canvas_i[:24, :20], canvas_l[:24, :20] = image, label
  kw = dict(crop_size=(32, 32), scale_range=(0.5, 2.0), flip=True, ignore_label=255)
  for seed in range(4):
    key = jax.random.key(seed)
    a = _batch(key, jnp.asarray(image)[None], jnp.asarray(label)[None], **kw)
    b = _batch(
      key,
      jnp.asarray(canvas_i)[None],
      jnp.asarray(canvas_l)[None],
      jnp.asarray([[24, 20]], jnp.int32),
      **kw,
    )
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-4)  # Jitted: float32 rounding.


def test_base_scale_multiplies_the_random_ratio():
  image, label = _blocks(24, 20)
  kw = dict(crop_size=(48, 40), flip=False, ignore_label=255)
  size = jnp.asarray([[24, 20]], jnp.int32)
  doubled = _batch(
    jax.random.key(0), jnp.asarray(image)[None], jnp.asarray(label)[None], size,
    jnp.asarray([2.0]), scale_range=(1.0, 1.0), **kw,
  )  # fmt: skip
  ref = np.kron(label, np.ones((2, 2), np.int32))
  np.testing.assert_array_equal(doubled[1][0], ref)


def test_cat_max_ratio_prefers_crops_with_more_than_one_dominant_class():
  label = np.zeros((64, 64), np.int32)
  label[40:56, 40:56] = 1  # A small object in a large background.
  image = np.zeros((64, 64, 3), np.uint8)
  kw = dict(crop_size=(16, 16), scale_range=(1.0, 1.0), flip=False, ignore_label=255)
  batch = (jnp.asarray(np.stack([image] * 64)), jnp.asarray(np.stack([label] * 64)))
  _, plain = _batch(jax.random.key(0), *batch, **kw)
  _, balanced = _batch(jax.random.key(0), *batch, cat_max_ratio=0.75, num_classes=2, **kw)

  def ok(crop):
    counts = np.bincount(np.asarray(crop).ravel(), minlength=2)
    return counts.min() > 0 and counts.max() < 0.75 * counts.sum()

  assert sum(map(ok, balanced)) > 2 * sum(map(ok, plain)) > 0
  for crop in balanced:  # Still a crop of the label: rows/columns of the original.
    assert set(np.unique(crop).tolist()) <= {0, 1}


def test_photometric_distortion_changes_colours_only():
  image, label = _blocks(48, 48, block=8)
  kw = dict(crop_size=(32, 32), scale_range=(0.5, 2.0), flip=True)
  for seed in range(4):
    key = jax.random.key(seed)
    a_i, a_l = _augment(key, image, label, **kw)
    b_i, b_l = _augment(key, image, label, photometric=True, **kw)
    np.testing.assert_array_equal(a_l, b_l)
    assert b_i.min() >= 0 and b_i.max() <= 255
  assert not np.allclose(a_i, b_i)
