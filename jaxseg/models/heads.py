"""Segmentation heads shared by the networks: each takes backbone endpoints.

- `FCNHead`: conv-BN-ReLU, channel dropout, 1×1 classifier (mmsegmentation's
  auxiliary head; Long et al.'s score layer with one hidden convolution).
- `PyramidPooling`: PSPNet's pyramid (Zhao et al. 2017,
  https://arxiv.org/abs/1612.01105).
- `ASPP`: DeepLabV3's atrous spatial pyramid pooling (Chen et al. 2017,
  https://arxiv.org/abs/1706.05587).
- `deeplabv3plus_decoder`: DeepLabV3+'s stride-4 decoder (Chen et al. 2018,
  https://arxiv.org/abs/1802.02611).
- `AllMLPHead`: SegFormer's decoder (Xie et al. 2021,
  https://arxiv.org/abs/2105.15203).
- `UPerHead`: UPerNet's pyramid pooling and FPN (Xiao et al. 2018,
  https://arxiv.org/abs/1807.10221).
- `logits_at` and `auxiliary_logits`: the classifier and the auxiliary head,
  resized to the input as float32, as every network returns them.

The two functions create their layers in the calling network's scope, so the
parameter names stay the network's own (`classifier`, `aux_head`,
`low_level`, `decoder0` ...) and checkpoints do not depend on this module.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import layers, transformer

# ASPP rates of the DeepLabV3 paper by output stride.
PAPER_ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


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


class PyramidPooling(nn.Module):
  """Pools at each bin size, projects, upsamples, concatenates with the input.

  Branches of 1×1 conv + BN + ReLU, as in the authors' release and mmsegmentation.

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


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling: a 1×1 branch, three 3×3 atrous branches
  and image-level pooling, each conv-BN-ReLU, concatenated and projected.

  Attributes:
    rates: atrous rates of the three 3×3 branches.
    features: channels of every branch and of the projection (256).
    dropout_rate: dropout after the projection.
    dtype: computation dtype.
  """

  rates: Sequence[int]
  features: int = 256
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    branch = lambda k, rate, name: layers.ConvNormAct(
      self.features, k, dilation=rate, dtype=self.dtype, name=name
    )
    branches = [branch(1, 1, "conv1x1")(x, train=train)]
    for i, rate in enumerate(self.rates):
      branches.append(branch(3, rate, f"atrous{i}")(x, train=train))
    pooled = branch(1, 1, "image_pool")(layers.global_average_pool(x), train=train)
    branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.features)))
    x = branch(1, 1, "project")(layers.concat_channels(branches), train=train)
    return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


class LRASPPHead(nn.Module):
  """Lite R-ASPP (Howard et al. 2019, "Searching for MobileNetV3"), as
  torchvision's `LRASPPHead`: the high-level map through a 1×1 conv-BN-ReLU
  (`cbr`), gated by a sigmoid of its global mean's 1×1 projection (`scale`),
  upsampled to the low-level map, classified, and added to a 1×1 classifier
  of the low-level map (here classified, then upsampled: the same function).
  Parameter names follow torchvision's.

  Attributes:
    num_classes: output channels.
    features: channels of the high-level branch (128).
    dtype: computation dtype.

  Returns logits at the low-level map's size, in `dtype` (float32 in inference).
  """

  num_classes: int
  features: int = 128
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, low: jax.Array, high: jax.Array, *, train: bool) -> jax.Array:
    x = layers.torchvision_unit(self.features, activation="relu", dtype=self.dtype, name="cbr")(
      high, train=train
    )
    x = x * _LRASPPScale(self.features, self.dtype, name="scale")(high)
    conv = functools.partial(layers.Conv, self.num_classes, 1, use_bias=True, dtype=self.dtype)
    # torchvision upsamples the gated map, then classifies it; both are linear
    # per pixel and per channel (and the resize's weights sum to one), so
    # classifying first is the same function on 6× fewer channels to resize.
    high = conv(name="high_classifier")(x)
    high = layers.resize_bilinear(high, low.shape[1:3]).astype(self.dtype)
    if train:
      return conv(name="low_classifier")(low) + high
    # In inference the sum is the low classifier's, its result float32.
    return conv(name="low_classifier")(low, layers.Epilogue(residual=high, dtype=jnp.float32))


class _LRASPPScale(nn.Module):
  """torchvision's `scale`: global mean (`0`), 1×1 conv `1`, sigmoid."""

  features: int
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = layers.global_average_pool(x.astype(jnp.float32)).astype(self.dtype)
    return nn.sigmoid(layers.Conv(self.features, 1, dtype=self.dtype, name="1")(s))


def deeplabv3plus_decoder(
  x: jax.Array,
  low: jax.Array,
  *,
  low_level_features: int,
  features: int,
  separable: bool,
  dtype: layers.Dtype,
  train: bool,
) -> jax.Array:
  """Fuses the upsampled encoder output `x` with stride-4 features `low`.

  `low` is reduced to `low_level_features` by a 1×1 conv-BN-ReLU
  (`low_level`), concatenated with `x` resized to it, and fused by two 3×3
  conv-BN-ReLU layers (`decoder0`, `decoder1`; depthwise-separable with
  `separable`). Call inside a network's compact `__call__`.
  """
  low = layers.ConvNormAct(low_level_features, 1, dtype=dtype, name="low_level")(low, train=train)
  x = layers.resize_bilinear(x, low.shape[1:3]).astype(low.dtype)
  x = layers.concat_channels([x, low])
  for i in range(2):
    if separable:
      conv = layers.SeparableConvNormAct(features, dtype=dtype, name=f"decoder{i}")
    else:
      conv = layers.ConvNormAct(features, 3, dtype=dtype, name=f"decoder{i}")
    x = conv(x, train=train)
  return x


class AllMLPHead(nn.Module):
  """SegFormer's all-MLP decoder: each stage's map projected to `features`
  channels by a linear layer, upsampled to the first map's size, the four
  concatenated (deepest first) and fused by a 1×1 conv-BN-ReLU.

  Computed in the equal, cheaper order: projection and upsampling are linear
  per pixel and per channel (the resize's weights summing to one), so each
  stage's map goes through its projection times its block of the fusion
  kernel at its own resolution, and the four `features`-channel results are
  upsampled and summed. The 1×1 fusion of `4 × features` channels at stride 4
  (half of SegFormer-B0's multiply-adds at 512×512) and the concatenation are
  not computed; parameter names and values are the paper's layers'.

  Attributes:
    features: the decoder's width (256 for MiT-B0/B1, 768 otherwise).
    dtype: computation dtype.
  """

  features: int = 256
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array], *, train: bool) -> jax.Array:
    projections = [
      _Linear(self.features, name=f"linear_c{i}")(x.shape[-1]) for i, x in enumerate(maps)
    ]
    return _ProjectUpsampleFuse(self.features, self.dtype, name="linear_fuse")(
      maps, projections, train=train
    )


class _Linear(nn.Module):
  """The parameters of a `transformer.Dense` (`kernel` `[in, out]`, `bias`)."""

  features: int

  @nn.compact
  def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", transformer.trunc_normal, (in_features, self.features))
    return kernel, self.param("bias", nn.initializers.zeros, (self.features,))


class _ProjectUpsampleFuse(nn.Module):
  """`AllMLPHead`'s computation, with the 1×1 conv-BN unit's variables
  (`conv/kernel` `[1, 1, 4F, F]`, `bn`)."""

  features: int
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, maps, projections, *, train: bool) -> jax.Array:
    f, n = self.features, len(maps)
    kernel = _Kernel((1, 1, n * f, f), name="conv")()[0, 0]  # Row blocks: deepest stage first.
    norm = layers.BatchNorm(use_running_average=not train, name="bn")
    mul = shift = None
    if not train:
      mul, shift = norm(jax.ShapeDtypeStruct((f,), jnp.float32), fold=True)
    size, total = maps[0].shape[1:3], None
    for i, (x, (weight, bias)) in enumerate(zip(maps, projections, strict=True)):
      block = kernel[(n - 1 - i) * f : (n - i) * f]
      matrix, offset = weight @ block, bias @ block
      if mul is not None:  # Inference: the batch norm's scale folded in too.
        matrix, offset = matrix * mul, offset * mul
      y = transformer.matmul(x.astype(self.dtype), matrix.astype(self.dtype))
      y = (y.astype(jnp.float32) + offset).astype(self.dtype)
      y = layers.resize_bilinear(y, size).astype(jnp.float32)
      total = y if total is None else total + y
    y = total + shift if mul is not None else norm(total)
    return jax.nn.relu(y.astype(jnp.float32)).astype(self.dtype)


class _Kernel(nn.Module):
  shape: tuple[int, ...]

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param("kernel", layers.he_normal_fan_out, self.shape, jnp.float32)


class UPerHead(nn.Module):
  """UPerNet's decoder: PSPNet's pyramid pooling on the deepest map, an FPN
  top-down over all of them (1×1 laterals, 3×3 smoothing), every level
  upsampled to the finest and fused by a 3×3 conv-BN-ReLU
  (mmsegmentation's `UPerHead`, transformers' `UperNetHead`).

  Attributes:
    features: channels of every branch (512).
    bins: pyramid pooling's bin sizes.
    dtype: computation dtype.
  """

  features: int = 512
  bins: Sequence[int] = (1, 2, 3, 6)
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array], *, train: bool) -> jax.Array:
    unit = functools.partial(layers.ConvNormAct, self.features, dtype=self.dtype)
    deepest = maps[-1]
    pooled = [deepest]
    for i, b in enumerate(self.bins):
      y = unit(1, name=f"psp{i}")(layers.adaptive_avg_pool(deepest, b), train=train)
      pooled.append(layers.resize_bilinear(y, deepest.shape[1:3]).astype(self.dtype))
    levels = [unit(1, name=f"lateral{i}")(x, train=train) for i, x in enumerate(maps[:-1])]
    levels.append(unit(3, name="psp_bottleneck")(layers.concat_channels(pooled), train=train))
    for i in range(len(levels) - 1, 0, -1):  # Top-down: coarse to fine.
      up = layers.resize_bilinear(levels[i], levels[i - 1].shape[1:3]).astype(self.dtype)
      levels[i - 1] = levels[i - 1] + up
    size = levels[0].shape[1:3]
    outs = [unit(3, name=f"fpn{i}")(x, train=train) for i, x in enumerate(levels[:-1])]
    outs.append(levels[-1])
    outs = [layers.resize_bilinear(x, size).astype(self.dtype) for x in outs]
    return unit(3, name="fpn_bottleneck")(layers.concat_channels(outs), train=train)


def logits_at(
  x: jax.Array, size: Sequence[int], num_classes: int, dtype, *, train: bool
) -> jax.Array:
  """The 1×1 `classifier` on `x`, bilinearly resized to `size`, float32 (in
  inference the classifier computes float32 logits from `dtype` features)."""
  classifier = layers.classifier(num_classes, dtype)
  x = classifier(x) if train else classifier(x, layers.Epilogue(dtype=jnp.float32))
  return layers.upsample_logits(x, size)


def auxiliary_logits(
  network: nn.Module, x: jax.Array, size: Sequence[int], *, train: bool, name: str = "aux_head"
) -> jax.Array | None:
  """The auxiliary `FCNHead` (`name`, default `aux_head`) on `x`, resized to
  `size`, float32.

  Built from the calling network's `aux_channels`, `num_classes`,
  `dropout_rate` and `dtype`; None when it has no auxiliary head
  (`aux_channels` 0) or is neither training nor being initialised (the head
  only serves the training loss).
  """
  if not network.aux_channels or not (train or network.is_initializing()):
    return None
  aux = FCNHead(
    network.num_classes,
    network.aux_channels,
    network.dropout_rate,
    network.dtype,
    name=name,
  )(x, train=train)
  return layers.upsample_logits(aux, size)
