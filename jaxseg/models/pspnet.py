"""PSPNet: pyramid scene parsing on a dilated ResNet.

Zhao, Shi, Qi, Wang, Jia, "Pyramid Scene Parsing Network", CVPR 2017,
https://arxiv.org/abs/1612.01105. Head details as in the authors' release and
mmsegmentation: pyramid branches of 1×1 conv + BN + ReLU to C/4 channels each,
a 3×3 conv + BN + ReLU fusion, channel dropout 0.1, and an auxiliary FCN head on
the stage-3 features (loss weight 0.4, set in the config).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import layers, resnet


class PyramidPooling(nn.Module):
  """Pools at each bin size, projects, upsamples, concatenates with the input.

  Attributes:
    bins: output sizes of the adaptive average pools.
    features: channels of each branch (C/len(bins) in the paper).
    dtype: computation dtype.
  """

  bins: Sequence[int]
  features: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    size = x.shape[1:3]
    branches = [x]
    for i, b in enumerate(self.bins):
      y = layers.adaptive_avg_pool(x, b)
      y = layers.ConvNormAct(self.features, 1, dtype=self.dtype, name=f"branch{i}")(y, train=train)
      branches.append(layers.resize_bilinear(y, size).astype(x.dtype))
    return layers.concat_channels(branches)


class FCNHead(nn.Module):
  """conv-BN-ReLU, channel dropout, 1×1 classifier (the auxiliary head).

  Attributes:
    num_classes: output channels.
    features: channels of the 3×3 convolution.
    dropout_rate: channel dropout before the classifier.
    dtype: computation dtype.
  """

  num_classes: int
  features: int
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = layers.ConvNormAct(self.features, 3, dtype=self.dtype, name="conv")(x, train=train)
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    return layers.classifier(self.num_classes, self.dtype)(x)


class PSPNet(nn.Module):
  """PSPNet.

  Attributes:
    num_classes: number of classes.
    backbone: a ResNet name from `resnet.BACKBONES`.
    output_stride: backbone output stride (8 in the paper).
    backbone_width: channels of the backbone's first stage (64 in the paper).
    bins: pyramid bin sizes.
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
  backbone_width: int = 64
  bins: Sequence[int] = (1, 2, 3, 6)
  head_channels: int = 512
  aux_channels: int = 256
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    size = image.shape[1:3]
    trunk = resnet.BACKBONES[self.backbone](
      output_stride=self.output_stride,
      width=self.backbone_width,
      dtype=self.dtype,
      remat=self.remat,
      name="backbone",
    )
    x, endpoints = trunk(image, train=train)
    x = PyramidPooling(self.bins, x.shape[-1] // len(self.bins), dtype=self.dtype, name="ppm")(
      x, train=train
    )
    x = layers.ConvNormAct(self.head_channels, 3, dtype=self.dtype, name="bottleneck")(
      x, train=train
    )
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    x = layers.classifier(self.num_classes, self.dtype)(x)
    outputs = {"logits": layers.resize_bilinear(x.astype(jnp.float32), size)}
    if self.aux_channels and (train or self.is_initializing()):
      aux = FCNHead(
        self.num_classes, self.aux_channels, self.dropout_rate, self.dtype, name="aux_head"
      )(endpoints["stride16"], train=train)
      outputs["aux_logits"] = layers.resize_bilinear(aux.astype(jnp.float32), size)
    return outputs


# A tiny variant for tests.
_tiny = functools.partial(
  PSPNet, backbone="resnet18", backbone_width=8, head_channels=16, aux_channels=8
)
