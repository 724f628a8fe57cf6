"""Joint image/label transforms, run on the device inside the jitted step.

Random scale, random crop (padding with the ignore label where the crop leaves
the image) and horizontal flip compose into one affine map from output pixels
to source pixels, so they are applied as a single gather: bilinear for the
image, nearest for the label, and image and label can never drift apart.
Photometric distortion (`jaxseg.data.photometric`) then changes the image's
colours only. Randomness is keyed by (seed, step, index of the example in the
global batch), so results do not depend on how the batch is sharded.

Images of different sizes arrive padded to one shape, with each example's
valid `size`; every transform works on the valid region alone.
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxseg import errors
from jaxseg.data import photometric as photometric_lib
from jaxseg.data import preprocessing
from jaxseg.data.preprocessing import MEAN_RGB

# mmsegmentation's RandomCrop: crops drawn until the most frequent class
# covers less than `cat_max_ratio` of the crop, at most this many times.
CAT_MAX_RATIO_TRIES = 10


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """What the training augmentation does, built once from the config
  (`from_config`); hashable, so a jitted step can close over it.

  Attributes:
    crop_size: `(height, width)` of the output.
    scale_range: `(min, max)` resize ratio, drawn uniformly per example.
    flip: whether to flip horizontally with probability 1/2.
    ignore_label: label value for pixels outside the scaled image.
    cat_max_ratio: redraw the crop (up to 10 times) until its most frequent
      class covers less than this fraction of its labelled pixels; 1: off.
    num_classes: number of classes; required when `cat_max_ratio < 1`.
    photometric: whether to apply `photometric.distort` (brightness, contrast,
      saturation, hue; RGB only).
    fill: per-band value of pixels outside the image (the normalisation's
      mean, so they standardise to 0).
  """

  crop_size: tuple[int, int]
  scale_range: tuple[float, float] = (1.0, 1.0)
  flip: bool = False
  ignore_label: int = 255
  cat_max_ratio: float = 1.0
  num_classes: int | None = None
  photometric: bool = False
  fill: tuple[float, ...] = MEAN_RGB

  def __post_init__(self):
    if self.cat_max_ratio < 1.0 and self.num_classes is None:
      raise errors.InvalidInput("augmentation: cat_max_ratio < 1 needs num_classes")

  @classmethod
  def from_config(cls, config, num_classes: int, ignore_label: int) -> "Augmentation":
    """`config.crop_size` and `config.augment`, padding with the run's mean."""
    return cls(
      crop_size=tuple(config.crop_size),
      scale_range=tuple(config.augment.scale_range),
      flip=bool(config.augment.flip),
      ignore_label=ignore_label,
      cat_max_ratio=float(config.augment.cat_max_ratio),
      num_classes=num_classes,
      photometric=bool(config.augment.photometric),
      fill=tuple(preprocessing.from_config(config).mean),
    )


def augment_batch(
  key: jax.Array,
  image: jax.Array,
  label: jax.Array,
  size: jax.Array | None = None,
  base_scale: jax.Array | None = None,
  *,
  settings: Augmentation,
) -> tuple[jax.Array, jax.Array]:
  """Randomly scales, crops, flips and colour-distorts every example of a batch.

  Args:
    key: PRNG key for this step; example `i` uses `fold_in(key, i)`.
    image: `[N, H, W, bands]` uint8/uint16 images, each valid in its top-left `size`.
    label: `[N, H, W]` int32 labels.
    size: `[N, 2]` int32 valid `(height, width)`; None: all of `H, W`.
    base_scale: `[N]` float32 resize factor a ratio of 1 means (e.g. what fits
      the image into mmsegmentation's `img_scale`); None: 1.
    settings: what to do (`Augmentation`).

  Returns:
    `(image, label)`: `[N, ch, cw, bands]` float32 (in the input's units;
    pixels outside the image are `settings.fill`) and `[N, ch, cw]` int32.
  """
  n, h, w = label.shape
  if size is None:
    size = jnp.broadcast_to(jnp.asarray([h, w], jnp.int32), (n, 2))
  if base_scale is None:
    base_scale = jnp.ones((n,), jnp.float32)
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n))
  one = lambda k, im, lb, sz, base: augment_example(k, im, lb, sz, base, settings=settings)
  return jax.vmap(one)(keys, image, label, size, base_scale)


def augment_example(
  key: jax.Array,
  image: jax.Array,
  label: jax.Array,
  size: jax.Array,
  base_scale: jax.Array,
  *,
  settings: Augmentation,
) -> tuple[jax.Array, jax.Array]:
  """`augment_batch` for one `[H, W, bands]` image, `[H, W]` label and `[2]` size."""
  h, w = size[0].astype(jnp.float32), size[1].astype(jnp.float32)
  crop_size = settings.crop_size
  ch, cw = crop_size
  k_scale, k_y, k_x, k_flip = jax.random.split(key, 4)
  low, high = settings.scale_range
  scale = base_scale * jax.random.uniform(k_scale, minval=low, maxval=high)
  # Size of the resized image, rounded as a resize to integer size would be.
  sh = jnp.maximum(jnp.round(h * scale), 1.0)
  sw = jnp.maximum(jnp.round(w * scale), 1.0)

  # Crop offset, uniform over the positions that stay inside the resized
  # image; a crop larger than the image starts at 0 and is padded.
  def offset(ky, kx):
    oy = jnp.floor(jax.random.uniform(ky) * (jnp.maximum(sh - ch, 0.0) + 1.0))
    ox = jnp.floor(jax.random.uniform(kx) * (jnp.maximum(sw - cw, 0.0) + 1.0))
    return oy, ox

  oy, ox = offset(k_y, k_x)
  if settings.cat_max_ratio < 1.0:
    oy, ox = _balanced_offset(
      key, (oy, ox), offset, label, size, (sh, sw), crop_size, settings.cat_max_ratio,
      settings.num_classes,
    )  # fmt: skip
  flipped = settings.flip & jax.random.bernoulli(k_flip)
  out_image, out_label, inside = _warp(
    image, label, size, (sh, sw), (oy, ox), flipped, crop_size, settings.ignore_label,
    settings.fill,
  )  # fmt: skip
  if settings.photometric:
    distorted = photometric_lib.distort(jax.random.fold_in(key, 1), out_image)
    out_image = jnp.where(inside[..., None], distorted, out_image)
  return out_image, out_label


def _balanced_offset(key, first, offset, label, size, resized, crop_size, ratio, num_classes):
  """mmsegmentation's `cat_max_ratio`: the first of `first` and up to nine
  redrawn offsets whose crop has two or more classes and no class above
  `ratio` of its labelled pixels; the last one if none has."""
  keys = jax.random.split(jax.random.fold_in(key, 2), (CAT_MAX_RATIO_TRIES - 1, 2))
  oys, oxs = jax.vmap(lambda k: offset(k[0], k[1]))(keys)
  oys = jnp.concatenate([first[0][None], oys])
  oxs = jnp.concatenate([first[1][None], oxs])

  def counts(oy, ox):
    rows, cols, inside = _sample_grid(size, resized, (oy, ox), False, crop_size)
    ny, nx = _nearest(rows, cols, size)
    crop = jnp.where(inside, label[ny[:, None], nx[None, :]], -1)
    return jax.nn.one_hot(crop, num_classes, dtype=jnp.int32).sum((0, 1))

  c = jax.vmap(counts)(oys, oxs)
  ok = ((c > 0).sum(-1) > 1) & (c.max(-1) < ratio * c.sum(-1))
  pick = jnp.where(ok.any(), jnp.argmax(ok), CAT_MAX_RATIO_TRIES - 1)
  return oys[pick], oxs[pick]


def warp(
  image: jax.Array,
  label: jax.Array,
  resized: tuple,
  offset: tuple,
  flipped: jax.Array,
  crop_size: Sequence[int],
  ignore_label: int,
  size: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Resize to `resized`, crop `crop_size` at `offset`, then maybe flip; one gather.

  Args:
    image: `[H, W, 3]` image, valid in its top-left `size`.
    label: `[H, W]` int labels.
    resized: `(sh, sw)` size the valid image is resized to (scalars, may be traced).
    offset: `(oy, ox)` top-left corner of the crop in the resized image.
    flipped: whether to mirror the crop horizontally.
    crop_size: `(ch, cw)` static output size.
    ignore_label: label of output pixels outside the resized image.
    size: `[2]` valid `(height, width)`; None: all of `H, W`.

  Returns:
    `[ch, cw, 3]` float32 image (bilinear; the ImageNet mean outside) and
    `[ch, cw]` int32 labels (nearest; `ignore_label` outside).
  """
  if size is None:
    size = jnp.asarray(label.shape, jnp.int32)
  out_image, out_label, _ = _warp(
    image, label, size, resized, offset, flipped, crop_size, ignore_label
  )
  return out_image, out_label


def _sample_grid(size, resized, offset, flipped, crop_size):
  """Source coordinates (pixel-edge units) of the output pixels' centres, and
  which output pixels fall inside the resized image."""
  h, w = size[0].astype(jnp.float32), size[1].astype(jnp.float32)
  (sh, sw), (oy, ox), (ch, cw) = resized, offset, crop_size
  rows = jnp.arange(ch, dtype=jnp.float32) + oy
  cols = jnp.arange(cw, dtype=jnp.float32)
  cols = jnp.where(flipped, cw - 1 - cols, cols) + ox
  inside = (rows < sh)[:, None] & (cols < sw)[None, :]
  # The centre of resized pixel r is source coordinate (r + 0.5) * h / sh
  # (multiplied before dividing so exact cases stay exact).
  return (rows + 0.5) * h / sh, (cols + 0.5) * w / sw, inside


def _nearest(centre_y, centre_x, size):
  ny = jnp.clip(jnp.floor(centre_y), 0, size[0] - 1).astype(jnp.int32)
  nx = jnp.clip(jnp.floor(centre_x), 0, size[1] - 1).astype(jnp.int32)
  return ny, nx


def _warp(image, label, size, resized, offset, flipped, crop_size, ignore_label, fill=MEAN_RGB):
  centre_y, centre_x, inside = _sample_grid(size, resized, offset, flipped, crop_size)
  out_image = _bilinear(image.astype(jnp.float32), size, centre_y - 0.5, centre_x - 0.5)
  out_image = jnp.where(inside[..., None], out_image, jnp.asarray(fill, jnp.float32))
  ny, nx = _nearest(centre_y, centre_x, size)
  out_label = jnp.where(inside, label[ny[:, None], nx[None, :]], ignore_label)
  return out_image, out_label.astype(jnp.int32), inside


def _bilinear(image: jax.Array, size, ys: jax.Array, xs: jax.Array) -> jax.Array:
  """Samples the valid `size` of `image` at the grid `ys × xs` (edge-clamped)."""
  h, w = size[0], size[1]
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
