"""FCN-32s, FCN-16s and FCN-8s on VGG16.

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, https://arxiv.org/abs/1411.4038.

As in the authors' Caffe release: the first convolution pads by 100 pixels and
pools round up, so the stride-32 score map covers any input; 1×1 score layers
on fc7, pool4 and pool3; learned transposed-convolution upsampling (kernel 2×
its stride, initialised to bilinear interpolation); and the crops (offsets 19;
5 and 27; 5, 9 and 31) that align each upsampled map with the next and the
final one with the input, so the output is exactly the input's size.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import layers, vgg

# Offsets of the crops in the authors' networks (they follow from padding 100,
# five ceil-mode pools and the valid 7×7 fc6).
_FINAL_OFFSET = {32: 19, 16: 27, 8: 31}
_POOL4_OFFSET, _POOL3_OFFSET = 5, 9


def _crop(x: jax.Array, offset: int, size) -> jax.Array:
  return x[:, offset : offset + size[0], offset : offset + size[1]]


class FCN(nn.Module):
  """FCN at output stride 32, 16 or 8.

  Attributes:
    num_classes: number of classes.
    stride: 32 (FCN-32s), 16 (FCN-16s, adds pool4) or 8 (FCN-8s, adds pool3).
    width_divisor: divides VGG16's channels (1 in the paper).
    batch_norm: a VGG16-BN trunk instead of VGG16 (not in the paper; it lets
      FCN train from scratch, which plain VGG16 barely does).
    fc_features: channels of fc6/fc7 (4096 in the paper).
    dropout_rate: dropout after fc6 and fc7 (0.5).
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}`.
  """

  num_classes: int
  stride: int = 8
  width_divisor: int = 1
  batch_norm: bool = False
  fc_features: int = 4096
  dropout_rate: float = 0.5
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    if self.stride not in _FINAL_OFFSET:
      raise ValueError(f"FCN stride must be 32, 16 or 8, got {self.stride}")
    size = image.shape[1:3]
    c = self.num_classes
    _, endpoints = vgg.VGG(
      batch_norm=self.batch_norm,
      width_divisor=self.width_divisor,
      fc_features=self.fc_features,
      dropout_rate=self.dropout_rate,
      first_padding=100,
      dtype=self.dtype,
      name="backbone",
    )(image, train=train)

    def score(name, x, init=layers.classifier_init):
      return layers.Conv(c, 1, use_bias=True, dtype=self.dtype, kernel_init=init, name=name)(x)

    def upsample(name, x, factor):
      return layers.ConvTranspose(
        c,
        2 * factor,
        factor,
        dtype=self.dtype,
        kernel_init=layers.bilinear_upsampling_init,
        name=name,
      )(x)

    x = score("score_fr", endpoints["fc7"])
    if self.stride <= 16:
      x = upsample("upscore2", x, 2)
      # Zero-initialised skips: the finer net starts as the coarser one.
      skip = score("score_pool4", endpoints["pool4"], nn.initializers.zeros)
      x = x + _crop(skip, _POOL4_OFFSET, x.shape[1:3])
    if self.stride == 8:
      x = upsample("upscore_pool4", x, 2)
      skip = score("score_pool3", endpoints["pool3"], nn.initializers.zeros)
      x = x + _crop(skip, _POOL3_OFFSET, x.shape[1:3])
    x = upsample(f"upscore{self.stride}", x, self.stride)
    return {"logits": _crop(x, _FINAL_OFFSET[self.stride], size).astype(jnp.float32)}


# A tiny variant for tests.
_tiny = functools.partial(FCN, width_divisor=16, fc_features=16)
