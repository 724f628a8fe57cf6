"""UPerNet (Xiao et al. 2018, https://arxiv.org/abs/1807.10221) on a
four-stage backbone: ConvNeXt (`convnext.py`), Swin (`swin.py`) or ResNet.

`heads.UPerHead` (pyramid pooling on the stride-32 map, an FPN over the four,
fused at stride 4) and, in training, an FCN auxiliary head on the stride-16
map, as mmsegmentation's `upernet_*` configs and transformers'
`UperNetForSemanticSegmentation` (whose checkpoints, e.g.
`openmmlab/upernet-convnext-tiny`, `config.model.weights` imports).
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import backbones, heads, layers


class UPerNet(nn.Module):
  """UPerNet.

  Attributes:
    num_classes: number of classes.
    backbone: a name in `backbones.BACKBONES` with `stride4` .. `stride32`.
    head_features: channels of the decoder (512).
    bins: pyramid pooling's bin sizes.
    aux_channels: channels of the auxiliary head (256); 0 disables it.
    drop_path_rate: the backbone's stochastic depth, where it has one (ConvNeXt
      and Swin; mmsegmentation: 0.3-0.4 for T/S/B ConvNeXt, 0.3 Swin); None:
      the backbone's default.
    dropout_rate: channel dropout before the classifiers.
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}` and, when training with the
  auxiliary head, `aux_logits`.
  """

  num_classes: int
  backbone: str = "convnext_tiny"
  head_features: int = 512
  bins: tuple[int, ...] = (1, 2, 3, 6)
  aux_channels: int = 256
  drop_path_rate: float | None = None
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads."""
    return ("stride4", "stride8", "stride16", "stride32")

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    size = image.shape[1:3]
    _, endpoints = backbones.create(
      self.backbone, drop_path_rate=self.drop_path_rate, dtype=self.dtype
    )(image, train=train)
    maps = [endpoints[e] for e in self.endpoints_read()]
    x = heads.UPerHead(self.head_features, self.bins, self.dtype, name="decode_head")(
      maps, train=train
    )
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    outputs = {"logits": heads.logits_at(x, size, self.num_classes, self.dtype, train=train)}
    aux = heads.auxiliary_logits(self, endpoints["stride16"], size, train=train)
    if aux is not None:
      outputs["aux_logits"] = aux
    return outputs


# For tests: a narrow ConvNeXt and decoder.
_tiny = functools.partial(UPerNet, backbone="_convnext_tiny_test", head_features=16, aux_channels=8)
