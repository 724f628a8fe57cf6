"""The building blocks every model is made of.

Models build their convolutions and norms from here, never from raw `nn.Conv`,
so a faster formulation of an operation is one change for the whole zoo. A
formulation may change how a layer computes, never its parameter tree
(`kernel` is always HWIO), so checkpoints and weight converters keep working.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg.models import fast_ops, onednn, spatial
from jaxseg.models.spatial import (  # noqa: F401 - re-exported: models build from layers.
  adaptive_avg_pool,
  concat_channels,
  crop,
  global_average_pool,
  max_pool_2x2,
  max_pool_2x2_with_argmax,
  max_pool_3x3_s2,
  max_unpool_2x2,
  pad_bottom_right,
  pad_to_multiple,
  resize_bilinear,
  subsample,
  upsample_logits,
)

Dtype = Any

# torchvision's ResNet/VGG initialisation: He normal over fan-out.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Classifiers start near zero (mmsegmentation's normal(0, 0.01)), so initial
# logits are small and the first steps do not blow up.
classifier_init = nn.initializers.normal(0.01)


@dataclasses.dataclass(frozen=True)
class Epilogue:
  """What follows a convolution in inference, computed with it:
  `activation(conv(x) * scale + shift + residual)` in float32, rounded once
  to `dtype`. On the CPU this is one oneDNN primitive (a batch norm folded
  into the kernel, the sum and activation as post-operations); elsewhere XLA
  fuses it after the convolution.

  Attributes:
    scale: `[O]` float32 per output channel (a folded batch norm), or None.
    shift: `[O]` float32 added after the scale, or None.
    residual: `[N, H', W', O]` added before the activation, or None.
    activation: a name in `ACTIVATIONS`.
    dtype: of the result; None: the convolution's.
  """

  scale: jax.Array | None = None
  shift: jax.Array | None = None
  residual: jax.Array | None = None
  activation: str = "none"
  dtype: Any = None


class Conv(nn.Module):
  """2-D convolution, NHWC, with PyTorch-style symmetric padding by default.

  Default padding is `dilation * (kernel_size - 1) // 2` on every side (what
  torchvision's layers use), so strided convolutions sample the same pixels as
  the PyTorch reference networks whose weights jaxseg imports; `padding` can
  instead be an explicit amount, or TensorFlow's `"SAME"` / `"VALID"`. On the
  CPU backend every convolution runs on oneDNN where it is built (`onednn`,
  faster than XLA's for every shape measured, float32 and bfloat16). Without
  it, 1×1 convolutions run as a matrix multiplication, which XLA:CPU executes
  faster than a convolution, and in bfloat16 1×1 and wide k×k convolutions
  run as bf16 matmuls (`fast_ops`).

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: stride in both spatial dimensions.
    dilation: kernel dilation (atrous rate).
    padding: None (symmetric, as above), an int (that many pixels on every
      side), or "SAME" / "VALID" (TensorFlow's rules, asymmetric when needed).
    groups: feature groups; `groups == input channels` is a depthwise conv.
    use_bias: whether to add a bias.
    dtype: computation dtype; parameters stay float32.
    kernel_init: initializer of the `[k, k, in / groups, out]` kernel.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  padding: int | str | None = None
  groups: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Any = he_normal_fan_out

  @nn.compact
  def __call__(self, x: jax.Array, epilogue: Epilogue | None = None) -> jax.Array:
    """The convolution of `x` (and its bias), or with `epilogue` (inference)
    what that computes after it, in `epilogue.dtype`."""
    k = self.kernel_size
    shape = (k, k, x.shape[-1] // self.groups, self.features)
    kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
    bias = None
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    same = self.padding is None or self.padding == self.dilation * (k - 1) // 2
    if (
      k > 1
      and self.groups == 1
      and self.strides == 1
      and same
      and all(isinstance(d, int) for d in x.shape[1:3])  # Not symbolic (an export's).
      and self.dilation >= max(x.shape[1:3])
    ):
      # Every off-centre tap reads only padding (ASPP's large rates on small
      # maps): the convolution is exactly its centre tap, a 1×1.
      kernel, k = kernel[k // 2 : k // 2 + 1, k // 2 : k // 2 + 1], 1
    padding = self._pads(x.shape[1:3], k)
    if epilogue is not None:
      return self._with_epilogue(x, kernel, bias, padding, same, epilogue)
    y = self._convolve(x, kernel.astype(self.dtype), padding, same)
    if bias is not None:
      y = y + bias.astype(self.dtype)
    return y

  def _with_epilogue(self, x, kernel, bias, padding, same, epilogue: Epilogue) -> jax.Array:
    """`epilogue` after the convolution (kernel and bias float32)."""
    scale, shift = epilogue.scale, epilogue.shift
    total = jnp.zeros((self.features,), jnp.float32) if shift is None else shift
    if bias is not None:
      total = total + (bias if scale is None else bias * scale)
    out_dtype = jnp.dtype(epilogue.dtype or self.dtype)
    geometry = ((self.strides,) * 2, padding, (self.dilation,) * 2, self.groups)
    if (
      onednn.applies(self.dtype)
      and onednn.supports(x.shape, kernel.shape, padding, (self.dilation,) * 2)
      and onednn.fuses(x.shape, kernel.shape, *geometry)
    ):
      folded = kernel if scale is None else kernel * scale  # Per output channel.
      return onednn.conv_inference(
        x, folded.astype(self.dtype), total, *geometry, activation=epilogue.activation,
        residual=epilogue.residual, out_dtype=out_dtype,
      )  # fmt: skip
    y = self._convolve(x, kernel.astype(self.dtype), padding, same).astype(jnp.float32)
    y = (y if scale is None else y * scale) + total
    if epilogue.residual is not None:
      y = y + epilogue.residual.astype(jnp.float32)
    return ACTIVATIONS[epilogue.activation](y).astype(out_dtype)

  def _convolve(self, x, kernel, padding, same: bool) -> jax.Array:
    """The convolution alone, in `self.dtype`, by the fastest formulation."""
    k = kernel.shape[0]
    # bfloat16 on CPU: fast_ops' formulations reach the bf16 units.
    bf16_cpu = fast_ops.applies(self.dtype)
    if onednn.applies(self.dtype) and onednn.supports(
      x.shape, kernel.shape, padding, (self.dilation,) * 2
    ):
      y = onednn.conv(x, kernel, (self.strides,) * 2, padding, (self.dilation,) * 2, self.groups)
    elif k == 1 and self.groups == 1 and (same or self.padding in ("SAME", "VALID")):
      if self.strides > 1:
        x = spatial.subsample(x, self.strides)
      if bf16_cpu:
        y = fast_ops.matmul(x, kernel[0, 0])
      elif all(isinstance(d, int) and d == 1 for d in x.shape[1:3]):
        # A pooled map (squeeze-excitation): as a convolution, which TFLite's
        # converter takes (its batch matmul takes no rank-4 product).
        y = jax.lax.conv_general_dilated(
          x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
      else:
        y = jnp.einsum("nhwc,cd->nhwd", x, kernel[0, 0])
    elif (
      bf16_cpu
      and fast_ops.rows_win(*x.shape[1:], self.features)
      and k % 2 == 1
      and self.groups == 1
      and self.strides == 1
      and same
    ):
      y = fast_ops.bf16_conv(x, kernel, self.dilation)
    else:
      y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(self.strides, self.strides),
        padding=padding,
        rhs_dilation=(self.dilation, self.dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=self.groups,
      )
    return y

  def _pads(self, size, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """`((top, bottom), (left, right))` padding of a `k`×`k` kernel on `size`."""
    if isinstance(self.padding, str):
      padding = jax.lax.padtype_to_pads(
        size, (self.dilation * (k - 1) + 1,) * 2, (self.strides,) * 2, self.padding
      )
      return tuple(tuple(p) for p in padding)
    pad = self.dilation * (k - 1) // 2 if self.padding is None else self.padding
    return ((pad, pad), (pad, pad))


class ConvTranspose(nn.Module):
  """Transposed convolution with PyTorch's (and Caffe's) semantics, no padding.

  Input pixel `i` adds `x[i] @ kernel[p]` to output pixel `strides * i + p` for
  every kernel offset `p`, so the output has `(n - 1) * strides + kernel_size`
  pixels per side. The two shapes segmentation networks use run without a
  convolution, because XLA:CPU's transposed-convolution gradient is very slow:
  `kernel_size == strides` (U-Net's 2×2 up-convolution) is one matmul and a
  reshape; `kernel_size == 2 * strides` (FCN's learned upsampling) is one
  matmul and four shifted adds. Other shapes fall back to `lax.conv_transpose`.

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: upsampling factor.
    use_bias: whether to add a bias.
    dtype: computation dtype.
    kernel_init: initializer of the `[k, k, in, out]` kernel.
    learned: False makes the kernel a constant, `kernel_init`'s value (a
      fixed bilinear upsampling, say), not a parameter.
  """

  features: int
  kernel_size: int
  strides: int
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Any = he_normal_fan_out
  learned: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.strides
    shape = (k, k, x.shape[-1], self.features)
    if self.learned:
      kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
    else:
      kernel = jnp.asarray(self.kernel_init(jax.random.key(0), shape, jnp.float32))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    n, h, w, _ = x.shape
    if k == s and (onednn.applies(self.dtype) or fast_ops.applies(self.dtype)):
      # The same product as the einsum below, as a 1×1 oneDNN convolution or
      # a bf16 dot (see fast_ops), into s*s*out channels.
      flat = kernel.transpose(2, 0, 1, 3).reshape(x.shape[-1], -1)
      if onednn.applies(self.dtype):
        y = onednn.conv(x, flat[None, None], (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
      else:
        y = fast_ops.matmul(x, flat)
      y = y.reshape(n, h, w, s, s, -1).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * s, w * s, -1)
    elif k == s:
      y = jnp.einsum("nhwc,pqcd->nhpwqd", x, kernel).reshape(n, h * s, w * s, -1)
    elif k == 2 * s:
      # Each input pixel writes a 2s×2s patch; split it into 2×2 quadrants of
      # s×s, and quadrant (a, b) of pixel (i, j) lands on output block (i+a, j+b).
      # One 2-D product for all four, its columns ordered (a, b, p, q, d) so that
      # a quadrant is a block of columns (TFLite takes no rank-6 pad or product).
      d = self.features
      quadrants = kernel.reshape(2, s, 2, s, -1, d).transpose(4, 0, 2, 1, 3, 5)
      patches = x.reshape(n * h * w, -1) @ quadrants.reshape(x.shape[-1], -1)
      y = 0
      for a in range(2):
        for b in range(2):
          block = 2 * a + b
          start = block * s * s * d
          quadrant = jax.lax.slice_in_dim(patches, start, start + s * s * d, axis=1)
          quadrant = quadrant.reshape(n, h, w, s * s * d)
          y = y + jnp.pad(quadrant, ((0, 0), (a, 1 - a), (b, 1 - b), (0, 0)))
      y = y.reshape(n, h + 1, w + 1, s, s, d).transpose(0, 1, 3, 2, 4, 5)
      y = y.reshape(n, (h + 1) * s, (w + 1) * s, d)
    else:
      y = jax.lax.conv_transpose(
        x,
        kernel,
        (s, s),
        "VALID",
        dimension_numbers=("NHWC", "HWOI", "NHWC"),
        transpose_kernel=True,
      )
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def rematerialised(block: type[nn.Module]) -> type[nn.Module]:
  """`block` with its activations recomputed in the backward pass, not stored.

  The block must take `(x, train)` positionally: `nn.remat` traces keyword
  arguments, and `train` must stay a Python bool. Parameter names and values
  are unchanged (the module is named where it is created).
  """
  return nn.remat(block, static_argnums=(2,))


def bilinear_upsampling_init(key, shape, dtype=jnp.float32) -> jax.Array:
  """FCN's initialisation of a `[k, k, C, C]` upsampling kernel: bilinear
  interpolation from each channel to itself, zero across channels."""
  del key
  k, _, c_in, c_out = shape
  factor = (k + 1) // 2
  center = factor - 1 if k % 2 == 1 else factor - 0.5
  og = np.arange(k)
  filt = 1 - np.abs(og - center) / factor
  kernel = np.zeros(shape, np.float32)
  for c in range(min(c_in, c_out)):
    kernel[:, :, c, c] = np.outer(filt, filt)
  return jnp.asarray(kernel, dtype)


def classifier(num_classes: int, dtype: Dtype, name: str = "classifier") -> Conv:
  """The 1×1 convolution (with bias) that turns features into class logits."""
  return Conv(num_classes, 1, use_bias=True, dtype=dtype, kernel_init=classifier_init, name=name)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> "BatchNorm":
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here).

  Under `jax.jit` on globally sharded arrays the batch statistics are computed
  over the global batch, so this is synchronised BatchNorm on any number of
  devices and hosts, without an `axis_name`.
  """
  return BatchNorm(use_running_average=not train, dtype=dtype, name=name)


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm` over the last axis, the same variables and values
  (params `scale`, `bias`; batch_stats `mean`, `var`, biased), written as one
  multiply-add in float32 with the statistics folded in: its training forward
  and backward pass run 1.5× faster on XLA:CPU in bfloat16 (66 vs 102 ms at
  4×256²×64 with the ReLU after it), where Flax's normalises in three steps.

  Attributes:
    use_running_average: normalise with the running statistics (evaluation).
    momentum: decay of the running statistics.
    epsilon: added to the variance.
    dtype: output dtype.
  """

  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, fold: bool = False):
    """Normalises `x`; with `fold` (inference) returns instead the float32
    `(scale, shift)` per channel that it multiplies and adds (`x` then only
    gives the channel count: a `jax.ShapeDtypeStruct` will do)."""
    features = (x.shape[-1],)
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
    if fold:
      if not self.use_running_average:
        raise ValueError("BatchNorm folds into a convolution in inference only")
      mul = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
      return mul, bias - ra_mean.value * mul
    x32 = x.astype(jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axes)
      var = jnp.maximum(jnp.mean(jnp.square(x32), axes) - jnp.square(mean), 0.0)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return (x32 * mul + (bias - mean * mul)).astype(self.dtype)


# Activations by name: those an `Epilogue` (a oneDNN post-operation) computes.
ACTIVATIONS = onednn.ACTIVATIONS


def conv_norm(
  conv: Conv,
  norm: "BatchNorm | None",
  x: jax.Array,
  *,
  train: bool,
  activation: str = "none",
  residual: jax.Array | None = None,
  dtype: Dtype | None = None,
) -> jax.Array:
  """`activation(norm(conv(x)) + residual)` in float32, rounded once to
  `dtype` (default the convolution's), for a convolution and its batch norm
  (or None) made in the caller's scope, so they keep the caller's names.

  In inference the norm folds into the convolution's kernel and bias, and
  the whole is one `Epilogue`: on the CPU, one oneDNN primitive with no pass
  over memory of its own (XLA:CPU's bfloat16 elementwise code is slow too:
  a bf16 hard-swish over 240×320×64 took 3.0 ms, the same in float32 with
  the casts 0.6 ms).
  """
  dtype = dtype or conv.dtype
  if not train:
    mul = shift = None
    if norm is not None:
      mul, shift = norm(jax.ShapeDtypeStruct((conv.features,), jnp.float32), fold=True)
    return conv(x, Epilogue(mul, shift, residual, activation, dtype))
  y = conv(x) if norm is None else norm(conv(x))
  y = y.astype(jnp.float32)
  if residual is not None:
    y = y + residual.astype(jnp.float32)
  return ACTIVATIONS[activation](y).astype(dtype)


class ConvNormAct(nn.Module):
  """Conv (no bias) -> BatchNorm -> activation: the unit of every head, and of
  the MobileNets with torchvision's names (`torchvision_unit`).

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: stride.
    dilation: atrous rate.
    groups: feature groups (the input channels: depthwise).
    activation: "relu", "relu6", "hardswish" or "none".
    bn_epsilon: BatchNorm's epsilon (MobileNetV3: 0.001).
    bn_momentum: decay of the running statistics (MobileNetV3: 0.99).
    torchvision_names: name the convolution `0` and the BatchNorm `1`, as
      torchvision's `Conv2dNormActivation` does (its weights import one to
      one), instead of `conv` and `bn`.
    dtype: computation dtype.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  groups: int = 1
  activation: str = "relu"
  bn_epsilon: float = 1e-5
  bn_momentum: float = 0.9
  torchvision_names: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, residual: jax.Array | None = None) -> jax.Array:
    """The unit on `x`; `residual` is added before the activation."""
    conv_name, bn_name = ("0", "1") if self.torchvision_names else ("conv", "bn")
    conv = Conv(
      self.features,
      self.kernel_size,
      self.strides,
      self.dilation,
      groups=self.groups,
      dtype=self.dtype,
      name=conv_name,
    )
    norm = BatchNorm(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      dtype=jnp.float32,
      name=bn_name,
    )
    return conv_norm(conv, norm, x, train=train, activation=self.activation, residual=residual)


def torchvision_unit(
  features: int,
  kernel_size: int = 1,
  strides: int = 1,
  dilation: int = 1,
  *,
  activation: str = "relu6",
  **kwargs,
) -> ConvNormAct:
  """`ConvNormAct` as torchvision's `Conv2dNormActivation`: its defaults (1×1,
  ReLU6) and its names (conv `0`, BatchNorm `1`), for the layers whose
  torchvision weights import one to one (MobileNets, LR-ASPP)."""
  return ConvNormAct(
    features, kernel_size, strides, dilation, activation=activation, torchvision_names=True,
    **kwargs,
  )  # fmt: skip


class SeparableConvNormAct(nn.Module):
  """Depthwise 3×3 conv-BN-ReLU then pointwise 1×1 conv-BN-ReLU (DeepLabV3+).

  Attributes:
    features: output channels.
    dilation: atrous rate of the depthwise convolution.
    dtype: computation dtype.
  """

  features: int
  dilation: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    depthwise = Conv(
      x.shape[-1], 3, dilation=self.dilation, groups=x.shape[-1], dtype=self.dtype, name="depthwise"
    )
    norm = batch_norm(train, self.dtype, name="depthwise_bn")
    x = conv_norm(depthwise, norm, x, train=train, activation="relu")
    pointwise = Conv(self.features, 1, dtype=self.dtype, name="pointwise")
    norm = batch_norm(train, self.dtype, name="pointwise_bn")
    return conv_norm(pointwise, norm, x, train=train, activation="relu")
