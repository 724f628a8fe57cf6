"""LR-ASPP: Lite Reduced ASPP on MobileNetV3, a real-time segmentation network.

Howard et al., "Searching for MobileNetV3", ICCV 2019,
https://arxiv.org/abs/1905.02244, as torchvision's `lraspp_mobilenet_v3_large`:
MobileNetV3-Large with its last stage dilated (output stride 16); the head
(`heads.LRASPPHead`) gates the last map by its global context, upsamples it to
the stride-8 map of the first stride-8 block (`features4`) and adds the two
maps' 1×1 classifiers; logits are resized to the input.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import backbones, heads, layers


class LRASPP(nn.Module):
  """LR-ASPP on a registered backbone.

  Attributes:
    num_classes: number of classes.
    backbone: a name in `backbones.BACKBONES` (the paper: mobilenet_v3_large).
    output_stride: of the backbone's last map (16 in the paper).
    low_endpoint: the backbone endpoint of the low-level branch (torchvision:
      `features4`, MobileNetV3-Large's first stride-8 block).
    head_features: channels of the high-level branch (128).
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}`.
  """

  num_classes: int
  backbone: str = "mobilenet_v3_large"
  output_stride: int = 16
  low_endpoint: str = "features4"
  head_features: int = 128
  dtype: layers.Dtype = jnp.float32

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads besides its last map."""
    return (self.low_endpoint,)

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    high, endpoints = backbones.create(
      self.backbone, output_stride=self.output_stride, dtype=self.dtype
    )(image, train=train)
    logits = heads.LRASPPHead(self.num_classes, self.head_features, self.dtype, name="classifier")(
      endpoints[self.low_endpoint], high, train=train
    )
    return {"logits": layers.upsample_logits(logits, image.shape[1:3])}


# For tests: the (already small) MobileNetV3-Large trunk with a narrow head.
_tiny = functools.partial(LRASPP, head_features=16)
