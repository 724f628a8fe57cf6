"""Photometric distortion as mmsegmentation's `PhotoMetricDistortion` does it.

Each of brightness, contrast, saturation and hue changes with probability
1/2; contrast comes first or last at random. Works on float RGB in [0, 255],
clipping after each change as the uint8 original does.
"""

import jax
import jax.numpy as jnp

BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA_DEGREES = 36.0  # mmsegmentation's 18 in OpenCV's half-degree hue units.


def distort(key: jax.Array, image: jax.Array) -> jax.Array:
  """Randomly distorts one `[H, W, 3]` float RGB image in [0, 255]."""
  keys = jax.random.split(key, 9)

  def maybe(k, changed, unchanged):
    return jnp.where(jax.random.bernoulli(k), changed, unchanged)

  def clip(x):
    return jnp.clip(x, 0.0, 255.0)

  delta = jax.random.uniform(keys[0], minval=-BRIGHTNESS_DELTA, maxval=BRIGHTNESS_DELTA)
  image = maybe(keys[1], clip(image + delta), image)
  alpha = jax.random.uniform(keys[2], minval=CONTRAST_RANGE[0], maxval=CONTRAST_RANGE[1])
  contrast_first = jax.random.bernoulli(keys[3])
  apply_contrast = jax.random.bernoulli(keys[4])
  image = jnp.where(contrast_first & apply_contrast, clip(image * alpha), image)

  hsv = rgb_to_hsv(image)
  factor = jax.random.uniform(keys[5], minval=SATURATION_RANGE[0], maxval=SATURATION_RANGE[1])
  hsv = maybe(keys[6], hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * factor, 0.0, 1.0)), hsv)
  shift = jax.random.uniform(keys[7], minval=-HUE_DELTA_DEGREES, maxval=HUE_DELTA_DEGREES) / 360
  hsv = maybe(keys[8], hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0)), hsv)
  image = clip(hsv_to_rgb(hsv))

  return jnp.where(~contrast_first & apply_contrast, clip(image * alpha), image)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """`[..., 3]` RGB in [0, 255] -> HSV with hue and saturation in [0, 1), value in [0, 255]."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = rgb.max(-1)
  chroma = value - rgb.min(-1)
  safe = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  hue = jnp.where(
    value == r,
    jnp.mod((g - b) / safe, 6.0),
    jnp.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
  )
  hue = jnp.where(chroma > 0, hue / 6.0, 0.0)
  return jnp.stack([hue, saturation, value], -1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """Inverse of `rgb_to_hsv`."""
  hue, saturation, value = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  k = jnp.mod(jnp.asarray([5.0, 3.0, 1.0]) + hue * 6.0, 6.0)
  return value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
