"""PSPNet: pyramid scene parsing on a dilated backbone.

Zhao, Shi, Qi, Wang, Jia, "Pyramid Scene Parsing Network", CVPR 2017,
https://arxiv.org/abs/1612.01105. Head details as in the authors' release and
mmsegmentation: pyramid branches of 1×1 conv + BN + ReLU to C/4 channels each,
a 3×3 conv + BN + ReLU fusion, channel dropout 0.1, and an auxiliary FCN head on
the stage-3 (`stride16`) features (loss weight 0.4, set in the config).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import backbones, heads, layers


class PSPNet(nn.Module):
  """PSPNet.

  Attributes:
    num_classes: number of classes.
    backbone: a name in `backbones.BACKBONES` (the paper: a dilated ResNet).
    output_stride: backbone output stride (8 in the paper).
    backbone_width: channels of the backbone's first stage; None: the
      backbone's own (64 for ResNet, as in the paper).
    bins: pyramid bin sizes; () for none (torchvision's FCN head).
    head_channels: channels of the fusion convolution (512 in the paper).
    aux_channels: channels of the auxiliary head (256); 0 disables it.
    dropout_rate: channel dropout before the classifiers.
    dtype: computation dtype; logits are float32.
    remat: recompute the backbone's activations in the backward pass (memory for
      compute; the same results and parameters).

  Returns a dict: `logits` `[N, H, W, num_classes]` at input resolution and,
  when training with the auxiliary head, `aux_logits` of the same shape.
  """

  num_classes: int
  backbone: str = "resnet50"
  output_stride: int = 8
  backbone_width: int | None = None
  bins: Sequence[int] = (1, 2, 3, 6)
  head_channels: int = 512
  aux_channels: int = 256
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32
  remat: bool = False

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads besides its last map."""
    return ("stride16",) if self.aux_channels else ()

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    size = image.shape[1:3]
    x, endpoints = backbones.create(
      self.backbone,
      output_stride=self.output_stride,
      width=self.backbone_width,
      dtype=self.dtype,
      remat=self.remat,
    )(image, train=train)
    if self.bins:  # None: torchvision's FCN head (`configs/torchvision.py:fcn_resnet50`).
      x = heads.PyramidPooling(
        self.bins, x.shape[-1] // len(self.bins), dtype=self.dtype, name="ppm"
      )(x, train=train)
    x = layers.ConvNormAct(self.head_channels, 3, dtype=self.dtype, name="bottleneck")(
      x, train=train
    )
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    outputs = {"logits": heads.logits_at(x, size, self.num_classes, self.dtype, train=train)}
    aux = heads.auxiliary_logits(self, endpoints.get("stride16"), size, train=train)
    if aux is not None:
      outputs["aux_logits"] = aux
    return outputs


# A tiny variant for tests.
_tiny = functools.partial(
  PSPNet, backbone="resnet18", backbone_width=8, head_channels=16, aux_channels=8
)
