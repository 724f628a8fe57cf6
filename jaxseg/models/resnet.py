"""ResNet v1 backbones, dilated for dense prediction.

He et al., "Deep Residual Learning for Image Recognition", 2016,
https://arxiv.org/abs/1512.03385. Dilation in place of stride follows
Chen et al. (DeepLab), https://arxiv.org/abs/1606.00915, and Yu & Koltun,
https://arxiv.org/abs/1511.07122.

Layout and parameter names follow torchvision (`conv1`, `bn1`, `layer1/0/conv1`,
`layer1/0/downsample/0` ...), so ImageNet weights map one to one. Like
torchvision's `replace_stride_with_dilation`, the first block of a dilated stage
keeps the previous stage's dilation.
"""

import functools
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import layers


class Downsample(nn.Module):
  """torchvision's projection shortcut: a strided 1×1 conv `0` and a BN `1`."""

  features: int
  strides: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    conv = layers.Conv(self.features, 1, self.strides, dtype=self.dtype, name="0")
    return layers.conv_norm(conv, layers.batch_norm(train, self.dtype, name="1"), x, train=train)


class BasicBlock(nn.Module):
  """Two 3×3 convolutions with an identity shortcut (ResNet-18/34)."""

  planes: int
  strides: int = 1
  dilation: int = 1
  downsample: bool = False
  dtype: layers.Dtype = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:  # Positional `train`: see remat.
    conv = functools.partial(layers.Conv, dtype=self.dtype)
    unit = functools.partial(layers.conv_norm, train=train, activation="relu")
    bn = functools.partial(layers.batch_norm, train, self.dtype)
    y = unit(conv(self.planes, 3, self.strides, self.dilation, name="conv1"), bn(name="bn1"), x)
    if self.downsample:
      x = Downsample(self.planes, self.strides, self.dtype, name="downsample")(x, train=train)
    return unit(conv(self.planes, 3, 1, self.dilation, name="conv2"), bn(name="bn2"), y, residual=x)


class Bottleneck(nn.Module):
  """1×1 reduce, 3×3 (strided, dilated), 1×1 expand ×4 (ResNet-50/101).

  The stride sits on the 3×3 convolution (ResNet v1.5, as torchvision).
  """

  planes: int
  strides: int = 1
  dilation: int = 1
  downsample: bool = False
  dtype: layers.Dtype = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:  # Positional `train`: see remat.
    conv = functools.partial(layers.Conv, dtype=self.dtype)
    bn = functools.partial(layers.batch_norm, train, self.dtype)
    unit = functools.partial(layers.conv_norm, train=train, activation="relu")
    y = unit(conv(self.planes, 1, name="conv1"), bn(name="bn1"), x)
    y = unit(conv(self.planes, 3, self.strides, self.dilation, name="conv2"), bn(name="bn2"), y)
    if self.downsample:
      x = Downsample(self.planes * 4, self.strides, self.dtype, name="downsample")(x, train=train)
    return unit(conv(self.planes * 4, 1, name="conv3"), bn(name="bn3"), y, residual=x)


class Stage(nn.Module):
  """One ResNet stage (torchvision's `layerN`), blocks named `0`, `1`, ...

  Attributes:
    block: `BasicBlock` or `Bottleneck`.
    planes: bottleneck width of the stage.
    dilations: one dilation per block.
    strides: stride of the first block.
    dtype: computation dtype.
    remat: recompute each block's activations in the backward pass instead of
      keeping them (less memory, about one more forward pass of compute).
  """

  block: type[nn.Module]
  planes: int
  dilations: Sequence[int]
  strides: int = 1
  dtype: layers.Dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    out_features = self.planes * self.block.expansion
    block = layers.rematerialised(self.block) if self.remat else self.block
    for j, dilation in enumerate(self.dilations):
      first = j == 0
      x = block(
        self.planes,
        strides=self.strides if first else 1,
        dilation=dilation,
        downsample=first and (self.strides != 1 or x.shape[-1] != out_features),
        dtype=self.dtype,
        name=str(j),
      )(x, train)
    return x


class ResNet(nn.Module):
  """ResNet v1 trunk (no classifier) returning named endpoints.

  Attributes:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block: `BasicBlock` or `Bottleneck`.
    output_stride: 8, 16 or 32; stages past it replace stride with dilation.
    multi_grid: per-block dilation multipliers of the last stage (DeepLab's
      (1, 2, 4)); None or () keeps torchvision's rule.
    width: channels of the first stage (64 in the paper); stages double it.
    dtype: computation dtype.
    remat: rematerialise every block (see `Stage`); parameters are unchanged.

  Returns `(x, endpoints)`: `x` is the last stage's output; `endpoints` maps
  `stem` (after the max pool) and `stride4`, `stride8`, `stride16`, `stride32`
  (the outputs of `layer1`..`layer4`, named by their stride in the undilated
  network; the actual stride is `min(name, output_stride)`).
  """

  stage_sizes: Sequence[int]
  block: type[nn.Module]
  output_stride: int = 32
  multi_grid: Sequence[int] | None = None
  width: int = 64
  dtype: layers.Dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.output_stride not in (8, 16, 32):
      raise errors.InvalidInput(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
    stem = layers.Conv(self.width, 7, 2, dtype=self.dtype, name="conv1")
    x = layers.conv_norm(
      stem, layers.batch_norm(train, self.dtype, name="bn1"), x, train=train, activation="relu"
    )
    x = layers.max_pool_3x3_s2(x)
    endpoints = {"stem": x}
    stride, dilation = 4, 1
    for i, num_blocks in enumerate(self.stage_sizes):
      strides = 1 if i == 0 else 2
      previous_dilation = dilation
      if stride * strides > self.output_stride:
        dilation, strides = dilation * strides, 1
      stride *= strides
      dilations = [previous_dilation] + [dilation] * (num_blocks - 1)
      if i == len(self.stage_sizes) - 1 and self.multi_grid:
        dilations = [
          dilation * self.multi_grid[j % len(self.multi_grid)] for j in range(num_blocks)
        ]
      x = Stage(
        self.block,
        self.width * 2**i,
        dilations,
        strides,
        self.dtype,
        self.remat,
        name=f"layer{i + 1}",
      )(x, train=train)
      endpoints[f"stride{4 * 2**i}"] = x
    return x, endpoints


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block=Bottleneck)

ENDPOINTS = ("stem", "stride4", "stride8", "stride16", "stride32")

# Weight files (`models.pretrained`): torchvision's and timm's names are
# jaxseg's with dots for slashes. (bottleneck blocks?, blocks in layer3) -> name.
_BY_STRUCTURE = {
  (False, 2): "resnet18",
  (False, 6): "resnet34",
  (True, 6): "resnet50",
  (True, 23): "resnet101",
}
# The ImageNet classifier: torchvision's `fc`, timm's `head.fc`.
IMAGENET_CLASSIFIER = re.compile(r"^(fc|head\.fc)\.")


def detect_weights(keys: set[str]) -> str | None:
  """Which ResNet a torchvision/timm state dict's names describe (None: not a ResNet)."""
  if "layer1.0.conv1.weight" not in keys:
    return None
  if "conv1.0.weight" in keys:
    raise errors.InvalidInput(
      "this is a deep-stem ResNet (timm's ResNet-C/D variants, 'conv1.0.weight'); jaxseg's "
      "ResNets are torchvision's"
    )
  blocks = len({k.split(".")[1] for k in keys if k.startswith("layer3.")})
  bottleneck = "layer1.0.conv3.weight" in keys
  arch = _BY_STRUCTURE.get((bottleneck, blocks))
  if arch is None:
    kind = "bottleneck" if bottleneck else "basic-block"
    raise errors.InvalidInput(
      f"a {kind} ResNet with {blocks} blocks in layer3 is none of {sorted(_BY_STRUCTURE.values())}"
    )
  return arch
