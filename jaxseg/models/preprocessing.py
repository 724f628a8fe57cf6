"""What a network expects of its input: ImageNet standardisation and the pad colour.

Every model here takes float32 images standardised with ImageNet's mean and
deviation (what pretrained backbones were trained on). Training, evaluation,
inference, export and the input pipeline all take these from here.
"""

import jax
import jax.numpy as jnp
import numpy as np

MEAN_RGB = (123.675, 116.28, 103.53)
STDDEV_RGB = (58.395, 57.12, 57.375)
# The uint8 colour that pads images on the host: it standardises to about 0,
# as the crop padding of on-device augmentation does.
PAD_COLOUR = np.round(MEAN_RGB).astype(np.uint8)


def normalize(image: jax.Array) -> jax.Array:
  """uint8 (or float in [0, 255]) RGB `[..., 3]` -> float32, ImageNet-standardised."""
  mean = jnp.asarray(MEAN_RGB, jnp.float32)
  std = jnp.asarray(STDDEV_RGB, jnp.float32)
  return (image.astype(jnp.float32) - mean) / std
