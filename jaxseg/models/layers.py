"""The building blocks every model is made of.

Models build their convolutions and norms from here, never from raw `nn.Conv`,
so a faster formulation of an operation is one change for the whole zoo. A
formulation may change how a layer computes, never its parameter tree
(`kernel` is always HWIO), so checkpoints and weight converters keep working.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Dtype = Any

# torchvision's ResNet/VGG initialisation: He normal over fan-out.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Classifiers start near zero (mmsegmentation's normal(0, 0.01)), so initial
# logits are small and the first steps do not blow up.
classifier_init = nn.initializers.normal(0.01)


class Conv(nn.Module):
  """2-D convolution, NHWC, with PyTorch-style symmetric padding.

  Padding is `dilation * (kernel_size - 1) // 2` on every side (what
  torchvision's layers use), so strided convolutions sample the same pixels as
  the PyTorch reference networks whose weights jaxseg imports. 1×1 stride-1
  convolutions run as a matrix multiplication, which the CPU backend executes
  faster than a convolution, with the same `kernel` parameter.

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: stride in both spatial dimensions.
    dilation: kernel dilation (atrous rate).
    use_bias: whether to add a bias.
    dtype: computation dtype; parameters stay float32.
    kernel_init: initializer of the `[k, k, in, out]` kernel.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Any = he_normal_fan_out

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if k == 1:
      if self.strides > 1:
        x = x[:, :: self.strides, :: self.strides]
      y = jnp.einsum("nhwc,cd->nhwd", x, kernel[0, 0])
    else:
      pad = self.dilation * (k - 1) // 2
      y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(self.strides, self.strides),
        padding=((pad, pad), (pad, pad)),
        rhs_dilation=(self.dilation, self.dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
      )
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def classifier(num_classes: int, dtype: Dtype, name: str = "classifier") -> Conv:
  """The 1×1 convolution (with bias) that turns features into class logits."""
  return Conv(num_classes, 1, use_bias=True, dtype=dtype, kernel_init=classifier_init, name=name)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here).

  Under `jax.jit` on globally sharded arrays the batch statistics are computed
  over the global batch, so this is synchronised BatchNorm on any number of
  devices and hosts, without an `axis_name`.
  """
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
  )


class ConvNormAct(nn.Module):
  """Conv (no bias) -> BatchNorm -> ReLU, the unit of every segmentation head.

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    strides: stride.
    dilation: atrous rate.
    act: apply ReLU.
    dtype: computation dtype.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  act: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = Conv(
      self.features,
      self.kernel_size,
      self.strides,
      self.dilation,
      dtype=self.dtype,
      name="conv",
    )(x)
    x = batch_norm(train, self.dtype, name="bn")(x)
    return nn.relu(x) if self.act else x


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """The ResNet stem's 3×3 stride-2 max pool with PyTorch's padding of 1."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def resize_bilinear(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Bilinear resize of `[N, H, W, C]` to `size` (half-pixel centres).

  Matches PyTorch's `interpolate(mode="bilinear", align_corners=False)` when
  upsampling, which is how every head here upsamples.
  """
  h, w = size
  if x.shape[1:3] == (h, w):
    return x
  return jax.image.resize(x, (x.shape[0], h, w, x.shape[-1]), "bilinear", antialias=False)


def adaptive_avg_pool(x: jax.Array, bins: int) -> jax.Array:
  """PyTorch's `adaptive_avg_pool2d`: `[N, H, W, C]` -> `[N, bins, bins, C]`.

  Bin `i` averages rows `floor(i*H/bins)` to `ceil((i+1)*H/bins)`, so any H, W
  work (bins may overlap when H is not a multiple of `bins`). Written as two
  small averaging matrices built at trace time.
  """

  def averaging_matrix(n: int) -> np.ndarray:
    m = np.zeros((bins, n), np.float32)
    for i in range(bins):
      start, end = (i * n) // bins, -((-(i + 1) * n) // bins)
      m[i, start:end] = 1.0 / (end - start)
    return m

  ph = jnp.asarray(averaging_matrix(x.shape[1]), x.dtype)
  pw = jnp.asarray(averaging_matrix(x.shape[2]), x.dtype)
  return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw)
