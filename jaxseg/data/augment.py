"""Joint image/label transforms, run on the device inside the jitted step.

Random scale, random crop (padding with the ignore label where the crop leaves
the image) and horizontal flip compose into one affine map from output pixels
to source pixels, so they are applied as a single gather: bilinear for the
image, nearest for the label, and image and label can never drift apart.
Randomness is keyed by (seed, step, index of the example in the global batch),
so results do not depend on how the batch is sharded over devices.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# ImageNet statistics, which every pretrained backbone expects.
MEAN_RGB = (123.675, 116.28, 103.53)
STDDEV_RGB = (58.395, 57.12, 57.375)


def normalize(image: jax.Array) -> jax.Array:
  """uint8 (or float in [0, 255]) RGB `[..., 3]` -> float32, ImageNet-standardised."""
  mean = jnp.asarray(MEAN_RGB, jnp.float32)
  std = jnp.asarray(STDDEV_RGB, jnp.float32)
  return (image.astype(jnp.float32) - mean) / std


def augment_batch(
  key: jax.Array,
  image: jax.Array,
  label: jax.Array,
  *,
  crop_size: Sequence[int],
  scale_range: Sequence[float],
  flip: bool,
  ignore_label: int,
) -> tuple[jax.Array, jax.Array]:
  """Randomly scales, crops and flips every example of a batch.

  Args:
    key: PRNG key for this step; example `i` uses `fold_in(key, i)`.
    image: `[N, H, W, 3]` uint8 images.
    label: `[N, H, W]` int32 labels.
    crop_size: `(height, width)` of the output.
    scale_range: `(min, max)` resize ratio, drawn uniformly per example.
    flip: whether to flip horizontally with probability 1/2.
    ignore_label: label value for pixels outside the scaled image.

  Returns:
    `(image, label)`: `[N, ch, cw, 3]` float32 (still in [0, 255]; pixels
    outside the image are the ImageNet mean, i.e. 0 after `normalize`) and
    `[N, ch, cw]` int32.
  """
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(image.shape[0]))
  fn = lambda k, im, lb: augment_example(
    k,
    im,
    lb,
    crop_size=crop_size,
    scale_range=scale_range,
    flip=flip,
    ignore_label=ignore_label,
  )
  return jax.vmap(fn)(keys, image, label)


def augment_example(
  key: jax.Array,
  image: jax.Array,
  label: jax.Array,
  *,
  crop_size: Sequence[int],
  scale_range: Sequence[float],
  flip: bool,
  ignore_label: int,
) -> tuple[jax.Array, jax.Array]:
  """`augment_batch` for one `[H, W, 3]` image and `[H, W]` label."""
  h, w = image.shape[:2]
  ch, cw = crop_size
  k_scale, k_y, k_x, k_flip = jax.random.split(key, 4)
  scale = jax.random.uniform(k_scale, minval=scale_range[0], maxval=scale_range[1])
  # Size of the resized image, rounded as a resize to integer size would be.
  sh = jnp.maximum(jnp.round(h * scale), 1.0)
  sw = jnp.maximum(jnp.round(w * scale), 1.0)
  # Crop offset, uniform over the positions that stay inside the resized
  # image; a crop larger than the image starts at 0 and is padded.
  oy = jnp.floor(jax.random.uniform(k_y) * (jnp.maximum(sh - ch, 0.0) + 1.0))
  ox = jnp.floor(jax.random.uniform(k_x) * (jnp.maximum(sw - cw, 0.0) + 1.0))
  flipped = flip & jax.random.bernoulli(k_flip)
  return warp(image, label, (sh, sw), (oy, ox), flipped, crop_size, ignore_label)


def warp(
  image: jax.Array,
  label: jax.Array,
  resized: tuple,
  offset: tuple,
  flipped: jax.Array,
  crop_size: Sequence[int],
  ignore_label: int,
) -> tuple[jax.Array, jax.Array]:
  """Resize to `resized`, crop `crop_size` at `offset`, then maybe flip; one gather.

  Args:
    image: `[H, W, 3]` image.
    label: `[H, W]` int labels.
    resized: `(sh, sw)` size the image is resized to (scalars, may be traced).
    offset: `(oy, ox)` top-left corner of the crop in the resized image.
    flipped: whether to mirror the crop horizontally.
    crop_size: `(ch, cw)` static output size.
    ignore_label: label of output pixels outside the resized image.

  Returns:
    `[ch, cw, 3]` float32 image (bilinear; the ImageNet mean outside) and
    `[ch, cw]` int32 labels (nearest; `ignore_label` outside).
  """
  h, w = image.shape[:2]
  (sh, sw), (oy, ox), (ch, cw) = resized, offset, crop_size
  rows = jnp.arange(ch, dtype=jnp.float32) + oy
  cols = jnp.arange(cw, dtype=jnp.float32)
  cols = jnp.where(flipped, cw - 1 - cols, cols) + ox
  inside = (rows < sh)[:, None] & (cols < sw)[None, :]
  # The centre of resized pixel r is source coordinate (r + 0.5) * h / sh (in
  # pixel-edge units; multiplied before dividing so exact cases stay exact).
  centre_y = (rows + 0.5) * h / sh
  centre_x = (cols + 0.5) * w / sw

  out_image = _bilinear(image.astype(jnp.float32), centre_y - 0.5, centre_x - 0.5)
  out_image = jnp.where(inside[..., None], out_image, jnp.asarray(MEAN_RGB, jnp.float32))
  ny = jnp.clip(jnp.floor(centre_y), 0, h - 1).astype(jnp.int32)
  nx = jnp.clip(jnp.floor(centre_x), 0, w - 1).astype(jnp.int32)
  out_label = jnp.where(inside, label[ny[:, None], nx[None, :]], ignore_label)
  return out_image, out_label.astype(jnp.int32)


def _bilinear(image: jax.Array, ys: jax.Array, xs: jax.Array) -> jax.Array:
  """Samples `image` at the grid `ys × xs` (edge-clamped, half-pixel centres)."""
  h, w = image.shape[:2]
  ys = jnp.clip(ys, 0, h - 1)
  xs = jnp.clip(xs, 0, w - 1)
  y0 = jnp.floor(ys).astype(jnp.int32)
  x0 = jnp.floor(xs).astype(jnp.int32)
  y1 = jnp.minimum(y0 + 1, h - 1)
  x1 = jnp.minimum(x0 + 1, w - 1)
  fy = (ys - y0)[:, None, None]
  fx = (xs - x0)[None, :, None]
  top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
  bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
  return top * (1 - fy) + bottom * fy
