"""MobileNetV2 and MobileNetV3-Large backbones, dilated for dense prediction.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018,
https://arxiv.org/abs/1801.04381; Howard et al., "Searching for MobileNetV3",
2019, https://arxiv.org/abs/1905.02244.

Layout and parameter names follow torchvision's `features` (`features/0/0`,
`features/3/conv/1/0`, `features/13/block/2/fc1` ...), so its ImageNet weight
files map one to one; batch-norm epsilon and momentum, hard-swish and the
squeeze-excitation's hard-sigmoid are torchvision's. Dilation replaces stride
past `output_stride`: for MobileNetV3, as torchvision's segmentation models do
(`dilated=True`: the last stage at dilation 2, output stride 16); for
MobileNetV2, as DeepLab does (output stride 16 or 8; the first block of a
dilated stage keeps the previous dilation).
"""

import functools
import re

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import layers


def make_divisible(value: float, divisor: int = 8) -> int:
  """torchvision's `_make_divisible`: nearest multiple of `divisor`, never
  more than 10% below `value`."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidualV2Layers(nn.Module):
  """MobileNetV2's block body (torchvision's `conv`): 1×1 expand (unless the
  ratio is 1), 3×3 depthwise, linear 1×1 projection and its BatchNorm."""

  features: int
  expand_ratio: int
  strides: int
  dilation: int
  dtype: layers.Dtype = jnp.float32
  activation: str = "relu6"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, residual: jax.Array | None = None) -> jax.Array:
    hidden = round(x.shape[-1] * self.expand_ratio)
    unit = functools.partial(layers.torchvision_unit, activation=self.activation, dtype=self.dtype)
    index = 0
    if self.expand_ratio != 1:
      x = unit(hidden, name="0")(x, train=train)
      index = 1
    x = unit(hidden, 3, self.strides, self.dilation, groups=hidden, name=str(index))(x, train=train)
    projection = layers.Conv(self.features, 1, dtype=self.dtype, name=str(index + 1))
    norm = layers.batch_norm(train, self.dtype, name=str(index + 2))
    return layers.conv_norm(projection, norm, x, train=train, residual=residual)


class InvertedResidualV2(nn.Module):
  """MobileNetV2's inverted residual; the shortcut where shape allows.
  `activation` of the expansion and depthwise layers: ReLU6 (Fast-SCNN: ReLU)."""

  features: int
  expand_ratio: int
  strides: int = 1
  dilation: int = 1
  dtype: layers.Dtype = jnp.float32
  activation: str = "relu6"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    shortcut = self.strides == 1 and x.shape[-1] == self.features
    return InvertedResidualV2Layers(
      self.features,
      self.expand_ratio,
      self.strides,
      self.dilation,
      self.dtype,
      self.activation,
      name="conv",
    )(x, train=train, residual=x if shortcut else None)


class SqueezeExcitation(nn.Module):
  """torchvision's `SqueezeExcitation` as MobileNetV3 uses it: global mean,
  1×1 `fc1` + ReLU, 1×1 `fc2` + hard-sigmoid, channel scale."""

  squeeze: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = layers.global_average_pool(x.astype(jnp.float32)).astype(self.dtype)
    s = nn.relu(layers.Conv(self.squeeze, 1, use_bias=True, dtype=self.dtype, name="fc1")(s))
    s = layers.Conv(x.shape[-1], 1, use_bias=True, dtype=self.dtype, name="fc2")(s)
    scale = nn.hard_sigmoid(s.astype(jnp.float32))  # Float32 math: see layers.ConvNormAct.
    return (x.astype(jnp.float32) * scale).astype(self.dtype)


class InvertedResidualV3Layers(nn.Module):
  """MobileNetV3's block body (torchvision's `block`): 1×1 expand (when it
  widens), k×k depthwise, squeeze-excitation (optional), linear projection."""

  kernel_size: int
  expanded: int
  features: int
  use_se: bool
  activation: str
  strides: int
  dilation: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, residual: jax.Array | None = None) -> jax.Array:
    unit = functools.partial(
      layers.torchvision_unit, bn_epsilon=1e-3, bn_momentum=0.99, dtype=self.dtype
    )
    index = 0
    if self.expanded != x.shape[-1]:
      x = unit(self.expanded, activation=self.activation, name="0")(x, train=train)
      index = 1
    x = unit(
      self.expanded,
      self.kernel_size,
      self.strides,
      self.dilation,
      groups=self.expanded,
      activation=self.activation,
      name=str(index),
    )(x, train=train)
    if self.use_se:
      index += 1
      x = SqueezeExcitation(make_divisible(self.expanded // 4), self.dtype, name=str(index))(x)
    projection = unit(self.features, activation="none", name=str(index + 1))
    return projection(x, train=train, residual=residual)


class InvertedResidualV3(nn.Module):
  """MobileNetV3's inverted residual; the shortcut where the configured stride
  is 1 and the width unchanged (torchvision's rule)."""

  kernel_size: int
  expanded: int
  features: int
  use_se: bool
  activation: str
  strides: int = 1
  dilation: int = 1
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    # A dilated block runs at stride 1 (torchvision: `stride = 1 if dilation > 1`).
    shortcut = self.strides == 1 and x.shape[-1] == self.features
    return InvertedResidualV3Layers(
      self.kernel_size,
      self.expanded,
      self.features,
      self.use_se,
      self.activation,
      1 if self.dilation > 1 else self.strides,
      self.dilation,
      self.dtype,
      name="block",
    )(x, train=train, residual=x if shortcut else None)


# MobileNetV2 (t, c, n, s): expansion, output channels, blocks, first stride.
V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
V2_STAGES += ((6, 160, 3, 2), (6, 320, 1, 1))

# MobileNetV3-Large blocks: kernel, expanded, out, SE, activation, stride; the
# last three (stride 32) are the ones `dilated` runs at dilation 2.
V3_LARGE_BLOCKS = (
  (3, 16, 16, False, "relu", 1),
  (3, 64, 24, False, "relu", 2),
  (3, 72, 24, False, "relu", 1),
  (5, 72, 40, True, "relu", 2),
  (5, 120, 40, True, "relu", 1),
  (5, 120, 40, True, "relu", 1),
  (3, 240, 80, False, "hardswish", 2),
  (3, 200, 80, False, "hardswish", 1),
  (3, 184, 80, False, "hardswish", 1),
  (3, 184, 80, False, "hardswish", 1),
  (3, 480, 112, True, "hardswish", 1),
  (3, 672, 112, True, "hardswish", 1),
  (5, 672, 160, True, "hardswish", 2),
  (5, 960, 160, True, "hardswish", 1),
  (5, 960, 160, True, "hardswish", 1),
)


def _record(endpoints: dict, index: int, x: jax.Array, stride: int) -> None:
  """Names layer `index`'s output `features{index}` and `stride{stride}`, by
  its stride in the undilated network (the last layer at each stride wins:
  the end of the stage, as ResNet's)."""
  endpoints[f"features{index}"] = x
  endpoints[f"stride{stride}"] = x


class MobileNetV2Features(nn.Module):
  """torchvision's `mobilenet_v2().features`: stem `0`, 17 inverted residuals
  `1`..`17`, the 1×1 to 1280 channels `18`; see `MobileNetV2`."""

  output_stride: int = 32
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.output_stride not in (8, 16, 32):
      raise errors.InvalidInput(
        f"MobileNetV2 runs at output stride 8, 16 or 32, not {self.output_stride}"
      )
    x = layers.torchvision_unit(32, 3, 2, dtype=self.dtype, name="0")(x, train=train)
    endpoints, stride, nominal, dilation, index = {}, 2, 2, 1, 0
    _record(endpoints, index, x, nominal)
    for expand_ratio, features, blocks, first_stride in V2_STAGES:
      for j in range(blocks):
        strides = first_stride if j == 0 else 1
        nominal *= strides
        block_dilation = dilation
        if stride * strides > self.output_stride:  # Dilation from here on.
          dilation, strides = dilation * strides, 1
        stride *= strides
        index += 1
        x = InvertedResidualV2(
          features, expand_ratio, strides, block_dilation, self.dtype, name=str(index)
        )(x, train=train)
        _record(endpoints, index, x, nominal)
    index += 1
    x = layers.torchvision_unit(1280, dtype=self.dtype, name=str(index))(x, train=train)
    _record(endpoints, index, x, nominal)
    return x, endpoints


class MobileNetV3LargeFeatures(nn.Module):
  """torchvision's `mobilenet_v3_large().features`: stem `0` (hard-swish),
  15 inverted residuals `1`..`15`, the 1×1 to 960 channels `16`; see
  `MobileNetV3Large`."""

  output_stride: int = 32
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.output_stride not in (16, 32):
      raise errors.InvalidInput(
        f"MobileNetV3 runs at output stride 16 or 32, not {self.output_stride}"
      )
    unit = functools.partial(
      layers.torchvision_unit, bn_epsilon=1e-3, bn_momentum=0.99, dtype=self.dtype
    )
    x = unit(16, 3, 2, activation="hardswish", name="0")(x, train=train)
    endpoints, nominal = {}, 2
    _record(endpoints, 0, x, nominal)
    for index, (k, expanded, features, use_se, act, strides) in enumerate(V3_LARGE_BLOCKS, 1):
      nominal *= strides
      dilation = 2 if nominal == 32 and self.output_stride == 16 else 1
      x = InvertedResidualV3(
        k, expanded, features, use_se, act, strides, dilation, self.dtype, name=str(index)
      )(x, train=train)
      _record(endpoints, index, x, nominal)
    index = len(V3_LARGE_BLOCKS) + 1
    x = unit(6 * 160, activation="hardswish", name=str(index))(x, train=train)
    _record(endpoints, index, x, nominal)
    return x, endpoints


class MobileNet(nn.Module):
  """A MobileNet trunk (no classifier) returning named endpoints.

  Attributes:
    features_module: `MobileNetV2Features` or `MobileNetV3LargeFeatures`.
    output_stride: 32, or 16 (and for MobileNetV2 8): later strides become
      dilation.
    dtype: computation dtype.

  Returns `(x, endpoints)`: `x` is the last layer's output; `endpoints` maps
  `stride2` .. `stride32` (the end of each stage, named by its stride in the
  undilated network) and `features{i}` (the output of torchvision's
  `features[i]`, the taps its segmentation models read).
  """

  features_module: type[nn.Module]
  output_stride: int = 32
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    return self.features_module(self.output_stride, self.dtype, name="features")(x, train=train)


MobileNetV2 = functools.partial(MobileNet, features_module=MobileNetV2Features)
MobileNetV3Large = functools.partial(MobileNet, features_module=MobileNetV3LargeFeatures)

_STRIDES = ("stride2", "stride4", "stride8", "stride16", "stride32")
V2_ENDPOINTS = _STRIDES + tuple(f"features{i}" for i in range(19))
V3_LARGE_ENDPOINTS = _STRIDES + tuple(f"features{i}" for i in range(17))

# The ImageNet classifier: torchvision's `classifier` (Linear layers).
IMAGENET_CLASSIFIER = re.compile(r"^classifier\.")


def detect_weights(keys: set[str]) -> str | None:
  """Which MobileNet a torchvision state dict's names describe (None: not one)."""
  if "features.1.conv.0.0.weight" in keys:
    blocks = len({k.split(".")[1] for k in keys if k.startswith("features.")})
    if blocks != 19:
      raise errors.InvalidInput(f"a MobileNetV2 has 19 feature layers; this file has {blocks}")
    return "mobilenet_v2"
  if "features.1.block.0.0.weight" in keys:
    blocks = len({k.split(".")[1] for k in keys if k.startswith("features.")})
    if blocks != 17:
      raise errors.InvalidInput(
        f"a MobileNetV3-Large has 17 feature layers; this file has {blocks} "
        "(MobileNetV3-Small is not a jaxseg backbone)"
      )
    return "mobilenet_v3_large"
  return None
