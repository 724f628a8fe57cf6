"""What a network expects of its input: standardisation per band and the pad value.

Images arrive as uint8 or uint16 `[..., H, W, bands]` and are standardised
band by band, `(x - mean) / std`, inside the compiled function. RGB uint8 runs
use ImageNet's statistics (what pretrained backbones were trained on); other
data (multi-band, 16-bit) use their dataset's, from `python -m
jaxseg.data.stats`. A run's `config.data.mean/std/channels` hold what it was
trained with (`from_config`), so training, evaluation, inference, export and
the input pipeline all normalise the same way.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import errors

MEAN_RGB = (123.675, 116.28, 103.53)
STDDEV_RGB = (58.395, 57.12, 57.375)


@dataclasses.dataclass(frozen=True)
class Normalization:
  """Per-band `mean` and `std` in the images' own units, and their sample type."""

  mean: tuple[float, ...] = MEAN_RGB
  std: tuple[float, ...] = STDDEV_RGB
  dtype: str = "uint8"

  @property
  def channels(self) -> int:
    return len(self.mean)

  @property
  def pad(self) -> np.ndarray:
    """The value that pads images on the host: it standardises to about 0,
    as the crop padding of on-device augmentation does."""
    top = np.iinfo(self.dtype).max
    return np.clip(np.round(self.mean), 0, top).astype(self.dtype)

  def empty(self, *shape: int) -> np.ndarray:
    """A `[*shape, bands]` image filled with `pad`."""
    out = np.empty((*shape, self.channels), self.dtype)
    out[...] = self.pad
    return out


IMAGENET = Normalization()
# The uint8 colour that pads RGB images.
PAD_COLOUR = IMAGENET.pad


def from_config(config) -> Normalization:
  """The normalisation a run's config describes (`config.data.channels`,
  `mean`, `std`, `dtype`); ImageNet's for configs from before those fields."""
  data = config.data
  mean, std = tuple(data.get("mean") or ()), tuple(data.get("std") or ())
  if not mean:
    return IMAGENET
  return Normalization(
    tuple(float(m) for m in mean), tuple(float(s) for s in std), data.get("dtype") or "uint8"
  )


def normalize(image: jax.Array, norm: Normalization = IMAGENET) -> jax.Array:
  """uint8/uint16 (or float in their range) `[..., bands]` -> float32, standardised."""
  if image.shape[-1] != norm.channels:
    raise errors.InvalidInput(
      f"images have {image.shape[-1]} bands; the model was trained on {norm.channels} "
      "(config.data.channels)"
    )
  mean = jnp.asarray(norm.mean, jnp.float32)
  std = jnp.asarray(norm.std, jnp.float32)
  return (image.astype(jnp.float32) - mean) / std
