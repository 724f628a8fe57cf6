"""DeepLabV3 and DeepLabV3+: atrous spatial pyramid pooling on a dilated backbone.

Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", 2017, https://arxiv.org/abs/1706.05587 (DeepLabV3), and
Chen, Zhu, Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018,
https://arxiv.org/abs/1802.02611 (DeepLabV3+).

ASPP (`heads.ASPP`): a 1×1 branch, three 3×3 atrous branches (rates 6, 12, 18
at output stride 16, doubled at output stride 8) and image-level pooling, 256
channels each with BatchNorm, concatenated and projected by a 1×1
convolution. The backbone's last stage uses multi-grid (1, 2, 4). DeepLabV3+
adds a decoder (`heads.deeplabv3plus_decoder`) that fuses 48-channel stride-4
features with the upsampled ASPP output through two 3×3 convolutions
(depthwise-separable as an option).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import backbones, heads, layers


class DeepLabV3(nn.Module):
  """DeepLabV3 (and, with `decoder`, DeepLabV3+).

  Attributes:
    num_classes: number of classes.
    backbone: a name in `backbones.BACKBONES` (the paper: a dilated ResNet).
    output_stride: 16 (the paper's training setting) or 8.
    backbone_width: channels of the backbone's first stage; None: the
      backbone's own (64 for ResNet, as in the paper).
    multi_grid: dilation multipliers of the last stage's blocks; None or ():
      the backbone's own rule (a backbone without the setting needs one of them).
    rates: ASPP rates; None picks the paper's for the output stride. They
      should shrink with the feature map: on small crops, rates past the
      map's size only see padding.
    aspp_features: channels of ASPP (256).
    head_features: channels of a 3×3 conv-BN-ReLU after ASPP (`head`);
      0 for none (the paper). torchvision's DeepLabHead has one of 256.
    decoder: add the DeepLabV3+ decoder.
    low_level_features: channels the stride-4 features are reduced to (48).
    decoder_features: channels of the decoder's 3×3 convolutions (256).
    separable: depthwise-separable decoder convolutions.
    aux_channels: channels of an auxiliary FCN head on `aux_endpoint`; 0
      for none (the paper has none).
    aux_endpoint: the backbone endpoint the auxiliary head reads (ResNet's
      stage 3; torchvision reads MobileNetV3's `features4`).
    dropout_rate: dropout after ASPP and in the auxiliary head.
    dtype: computation dtype; logits are float32.
    remat: recompute the backbone's activations in the backward pass (memory for
      compute; the same results and parameters).

  Returns `{"logits": [N, H, W, num_classes]}` (and `aux_logits` when
  training with an auxiliary head).
  """

  num_classes: int
  backbone: str = "resnet50"
  output_stride: int = 16
  backbone_width: int | None = None
  multi_grid: Sequence[int] | None = (1, 2, 4)
  rates: Sequence[int] | None = None
  aspp_features: int = 256
  head_features: int = 0
  decoder: bool = False
  low_level_features: int = 48
  decoder_features: int = 256
  separable: bool = False
  aux_channels: int = 0
  aux_endpoint: str = "stride16"
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32
  remat: bool = False

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads besides its last map."""
    return ("stride4",) * self.decoder + (self.aux_endpoint,) * bool(self.aux_channels)

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    size = image.shape[1:3]
    rates = self.rates if self.rates is not None else heads.PAPER_ASPP_RATES.get(self.output_stride)
    if rates is None:
      raise errors.InvalidInput(
        f"No paper ASPP rates for output_stride={self.output_stride}; set rates"
      )
    x, endpoints = backbones.create(
      self.backbone,
      output_stride=self.output_stride,
      multi_grid=self.multi_grid,
      width=self.backbone_width,
      dtype=self.dtype,
      remat=self.remat,
    )(image, train=train)
    x = heads.ASPP(rates, self.aspp_features, self.dropout_rate, self.dtype, name="aspp")(
      x, train=train
    )
    if self.head_features:
      x = layers.ConvNormAct(self.head_features, 3, dtype=self.dtype, name="head")(x, train=train)
    if self.decoder:
      x = heads.deeplabv3plus_decoder(
        x,
        endpoints["stride4"],
        low_level_features=self.low_level_features,
        features=self.decoder_features,
        separable=self.separable,
        dtype=self.dtype,
        train=train,
      )
    outputs = {"logits": heads.logits_at(x, size, self.num_classes, self.dtype, train=train)}
    aux = heads.auxiliary_logits(self, endpoints.get(self.aux_endpoint), size, train=train)
    if aux is not None:
      outputs["aux_logits"] = aux
    return outputs


# A tiny variant for tests.
_tiny = functools.partial(
  DeepLabV3,
  backbone="resnet18",
  backbone_width=8,
  rates=(1, 2, 3),
  aspp_features=16,
  low_level_features=8,
  decoder_features=16,
)
