"""U-Net: a contracting path and a symmetric expanding path joined by skips.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015, https://arxiv.org/abs/1505.04597.

Four 2× downsamplings and four upsamplings, 64 channels at the top doubling
per level, two 3×3 convolutions per level. As in today's common practice (and
unlike the paper's valid convolutions), convolutions are padded and followed by
BatchNorm, so the output has the input's size: inputs are padded to a
multiple of 16 and the logits cropped back.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import layers


class DoubleConv(nn.Module):
  """Two 3×3 conv-BN-ReLU layers."""

  features: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = layers.ConvNormAct(self.features, 3, dtype=self.dtype, name="conv1")(x, train=train)
    return layers.ConvNormAct(self.features, 3, dtype=self.dtype, name="conv2")(x, train=train)


class UNet(nn.Module):
  """U-Net.

  Attributes:
    num_classes: number of classes.
    features: channels of the top level (64 in the paper); doubled per level.
    depth: number of 2× downsamplings (4 in the paper).
    up_mode: "transpose" (a learned 2×2 stride-2 up-convolution halving the
      channels, as in the paper) or "bilinear" (parameter-free upsampling).
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}` for any H, W.
  """

  num_classes: int
  features: int = 64
  depth: int = 4
  up_mode: str = "transpose"
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    if self.up_mode not in ("transpose", "bilinear"):
      raise errors.InvalidInput(f"up_mode must be 'transpose' or 'bilinear', got {self.up_mode!r}")
    h, w = image.shape[1:3]
    x = layers.pad_to_multiple(image, 2**self.depth)
    skips = []
    for level in range(self.depth):
      x = DoubleConv(self.features * 2**level, self.dtype, name=f"down{level}")(x, train=train)
      skips.append(x)
      x = layers.max_pool_2x2(x)  # Sizes are even: padded to 2**depth above.
    x = DoubleConv(self.features * 2**self.depth, self.dtype, name="bottom")(x, train=train)
    for level in reversed(range(self.depth)):
      features = self.features * 2**level
      if self.up_mode == "transpose":
        x = layers.ConvTranspose(
          features, 2, 2, use_bias=True, dtype=self.dtype, name=f"up{level}"
        )(x)
      else:
        x = layers.resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2]))
      x = layers.concat_channels([skips[level], x.astype(skips[level].dtype)])
      x = DoubleConv(features, self.dtype, name=f"upconv{level}")(x, train=train)
    logits = layers.classifier(self.num_classes, self.dtype)(x)
    return {"logits": layers.crop(logits, (h, w)).astype(jnp.float32)}


# A tiny variant for tests.
_tiny = functools.partial(UNet, features=4)
