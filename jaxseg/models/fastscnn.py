"""Fast-SCNN: a real-time network that trains from scratch.

Poudel, Liwicki, Cipolla, "Fast-SCNN: Fast Semantic Segmentation Network",
BMVC 2019, https://arxiv.org/abs/1902.04502, as mmsegmentation defines it
(`FastSCNN` backbone, `DepthwiseSeparableFCNHead`, two auxiliary FCN heads):

- learning to downsample: a 3×3 stride-2 conv-BN-ReLU (32) and two stride-2
  depthwise-separable convolutions (48, 64): stride 8, shared by both branches;
- global feature extractor: MobileNetV2 inverted residuals with ReLU (3 × 64
  at stride 16, 3 × 96 at stride 32, 3 × 128), PSPNet's pyramid pooling
  (bins 1, 2, 3, 6) and a 3×3 conv-BN-ReLU (128);
- feature fusion: the global features upsampled to stride 8, a depthwise 3×3
  conv-BN-ReLU and a linear 1×1 conv-BN, added to a linear 1×1 conv-BN of
  the stride-8 features, then ReLU;
- classifier: two depthwise-separable convolutions (128), dropout, 1×1;
  logits resized to the input.

Auxiliary heads for training (loss weight 0.4 each in mmsegmentation), on the
global features and on the stride-8 features, are FCN heads of 32 channels.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import heads, layers, mobilenet


class DepthwiseSeparable(nn.Module):
  """mmcv's `DepthwiseSeparableConvModule` as Fast-SCNN uses it: a depthwise
  3×3 conv-BN without activation, then a pointwise 1×1 conv-BN-ReLU."""

  features: int
  strides: int = 1
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    channels = x.shape[-1]
    x = layers.ConvNormAct(
      channels,
      3,
      self.strides,
      activation="none",
      groups=channels,
      dtype=self.dtype,
      name="depthwise",
    )(x, train=train)
    return layers.ConvNormAct(self.features, 1, dtype=self.dtype, name="pointwise")(x, train=train)


class GlobalFeatureExtractor(nn.Module):
  """Inverted-residual groups, pyramid pooling and a 3×3 conv-BN-ReLU."""

  block_channels: Sequence[int]
  block_strides: Sequence[int]
  num_blocks: Sequence[int]
  expand_ratio: int
  pool_bins: Sequence[int]
  features: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    groups = zip(self.block_channels, self.block_strides, self.num_blocks, strict=True)
    for i, (channels, stride, blocks) in enumerate(groups):
      for j in range(blocks):
        x = mobilenet.InvertedResidualV2(
          channels,
          self.expand_ratio,
          stride if j == 0 else 1,
          dtype=self.dtype,
          activation="relu",
          name=f"bottleneck{i + 1}_{j}",
        )(x, train=train)
    branch = x.shape[-1] // len(self.pool_bins)
    x = heads.PyramidPooling(self.pool_bins, branch, self.dtype, name="ppm")(x, train=train)
    return layers.ConvNormAct(self.features, 3, dtype=self.dtype, name="out")(x, train=train)


class FeatureFusion(nn.Module):
  """Adds the upsampled global features to the stride-8 features."""

  features: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, higher: jax.Array, lower: jax.Array, *, train: bool) -> jax.Array:
    unit = functools.partial(layers.ConvNormAct, dtype=self.dtype)
    lower = layers.resize_bilinear(lower, higher.shape[1:3]).astype(lower.dtype)
    lower = unit(self.features, 3, groups=lower.shape[-1], name="dwconv")(lower, train=train)
    lower = unit(self.features, 1, activation="none", name="conv_lower_res")(lower, train=train)
    # The sum and its ReLU follow the higher-resolution branch's projection.
    fuse = unit(self.features, 1, activation="relu", name="conv_higher_res")
    return fuse(higher, train=train, residual=lower)


class FastSCNN(nn.Module):
  """Fast-SCNN (mmsegmentation's `fast_scnn` model).

  Attributes:
    num_classes: number of classes.
    downsample_channels: of the learning-to-downsample layers (32, 48, 64).
    block_channels: of the three inverted-residual groups (64, 96, 128).
    block_strides: of the groups' first blocks (2, 2, 1).
    num_blocks: blocks per group (3, 3, 3).
    expand_ratio: of the inverted residuals (6).
    pool_bins: pyramid pooling's output sizes (1, 2, 3, 6).
    features: channels of the global features, the fusion and the classifier
      (128).
    aux_channels: channels of the two auxiliary FCN heads (32); 0 for none.
    dropout_rate: before the classifiers.
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}`, and when training with
  auxiliary heads `aux_logits`: a tuple of the global features' and the
  stride-8 features' logits, each at the input's size.
  """

  num_classes: int
  downsample_channels: Sequence[int] = (32, 48, 64)
  block_channels: Sequence[int] = (64, 96, 128)
  block_strides: Sequence[int] = (2, 2, 1)
  num_blocks: Sequence[int] = (3, 3, 3)
  expand_ratio: int = 6
  pool_bins: Sequence[int] = (1, 2, 3, 6)
  features: int = 128
  aux_channels: int = 32
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    if len(self.downsample_channels) != 3:
      raise errors.InvalidInput(
        f"downsample_channels={tuple(self.downsample_channels)} needs 3 values: "
        "the stride-2 convolution's and the two separable convolutions'"
      )
    size = image.shape[1:3]
    first, *separable = self.downsample_channels
    higher = layers.ConvNormAct(first, 3, 2, dtype=self.dtype, name="downsample_conv")(
      image.astype(self.dtype), train=train
    )
    for i, channels in enumerate(separable):
      higher = DepthwiseSeparable(channels, 2, self.dtype, name=f"downsample_dsconv{i + 1}")(
        higher, train=train
      )
    lower = GlobalFeatureExtractor(
      self.block_channels,
      self.block_strides,
      self.num_blocks,
      self.expand_ratio,
      self.pool_bins,
      self.features,
      self.dtype,
      name="global_features",
    )(higher, train=train)
    x = FeatureFusion(self.features, self.dtype, name="fusion")(higher, lower, train=train)
    for i in range(2):
      x = DepthwiseSeparable(self.features, dtype=self.dtype, name=f"head{i}")(x, train=train)
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    outputs = {"logits": heads.logits_at(x, size, self.num_classes, self.dtype, train=train)}
    aux = [
      heads.auxiliary_logits(self, features, size, train=train, name=f"aux_head{i}")
      for i, features in enumerate((lower, higher))
    ]
    if aux[0] is not None:
      outputs["aux_logits"] = tuple(aux)
    return outputs


# A tiny variant for tests.
_tiny = functools.partial(
  FastSCNN,
  downsample_channels=(8, 8, 16),
  block_channels=(16, 16, 24),
  num_blocks=(1, 1, 1),
  expand_ratio=2,
  features=24,
  aux_channels=8,
)
