"""SegNet: a VGG16-BN encoder and a decoder that upsamples with pooling indices.

Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017,
https://arxiv.org/abs/1511.00561.

Every encoder max pool records where each maximum came from; the mirrored
decoder puts each value back in exactly that place (max-unpooling, zeros
elsewhere) and densifies the sparse map with 3×3 conv-BN-ReLU layers. The last
decoder convolution outputs the class scores.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import backbones, layers, vgg

# Output channels of the decoder's convolutions, deepest stage first (the
# encoder's VGG16 stages mirrored); the very last one is the classifier.
_DECODER = (
  (5, (512, 512, 512)),
  (4, (512, 512, 256)),
  (3, (256, 256, 128)),
  (2, (128, 64)),
  (1, (64,)),
)


class SegNet(nn.Module):
  """SegNet.

  Attributes:
    num_classes: number of classes.
    backbone: "vgg16_bn" (the paper's encoder); any registered backbone with
      VGG's pooling indices.
    width_divisor: divides every channel count (1 in the paper); a divisor of 64.
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}` for any H, W.
  """

  num_classes: int
  backbone: str = "vgg16_bn"
  width_divisor: int = 1
  dtype: layers.Dtype = jnp.float32

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads."""
    return tuple(f"pool{s}{k}" for s, _ in _DECODER for k in ("", "_indices", "_size"))

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    _, endpoints = backbones.create(
      self.backbone,
      width=vgg.width_from_divisor(self.width_divisor),
      pool_indices=True,
      dtype=self.dtype,
    )(image, train=train)
    x = endpoints["pool5"]
    for stage, channels in _DECODER:
      x = layers.max_unpool_2x2(
        x, endpoints[f"pool{stage}_indices"], endpoints[f"pool{stage}_size"]
      )
      for i, c in enumerate(channels):
        x = layers.ConvNormAct(
          c // self.width_divisor, 3, dtype=self.dtype, name=f"decoder{stage}_{i}"
        )(x, train=train)
    # SegNet's last decoder convolution is a 3×3 one straight to the classes.
    logits = layers.Conv(
      self.num_classes,
      3,
      use_bias=True,
      dtype=self.dtype,
      kernel_init=layers.classifier_init,
      name="classifier",
    )(x)
    return {"logits": logits.astype(jnp.float32)}


# A tiny variant for tests.
_tiny = functools.partial(SegNet, width_divisor=16)
