"""ConvNeXt (Liu et al. 2022, https://arxiv.org/abs/2201.03545) as a
segmentation backbone.

A 4×4 stride-4 patch stem with LayerNorm; four stages, each (after the first)
opened by LayerNorm and a 2×2 stride-2 convolution, of blocks: 7×7 depthwise
convolution, LayerNorm, fc to 4×, GELU, fc back, a learned per-channel
layer scale (1e-6 at initialisation), stochastic depth, residual. Endpoints
`stride4` .. `stride32` are the stages' maps, each through a LayerNorm of its
own (`norm{i}`, as mmsegmentation's and transformers' `ConvNextBackbone` add
for dense prediction). LayerNorm epsilon 1e-6 throughout, as the paper's code.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg.models import layers, transformer

ENDPOINTS = ("stride4", "stride8", "stride16", "stride32")
EPSILON = 1e-6


class ConvNeXtBlock(nn.Module):
  """dwconv 7×7 -> LayerNorm -> fc 4× -> GELU -> fc -> layer scale, + input."""

  dim: int
  drop_path: float
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = layers.Conv(
      self.dim, 7, groups=self.dim, use_bias=True, dtype=self.dtype,
      kernel_init=transformer.trunc_normal, name="dwconv",
    )(x)  # fmt: skip
    y = transformer.layer_norm(EPSILON, self.dtype, "norm")(y)
    y = transformer.Dense(4 * self.dim, dtype=self.dtype, name="pwconv1")(y)
    y = transformer.gelu(y.astype(jnp.float32)).astype(self.dtype)
    y = transformer.Dense(self.dim, dtype=self.dtype, name="pwconv2")(y)
    gamma = self.param("layer_scale", nn.initializers.constant(1e-6), (self.dim,), jnp.float32)
    y = (y.astype(jnp.float32) * gamma).astype(self.dtype)
    return x + transformer.drop_path(self, y, self.drop_path, train=train)


class ConvNeXt(nn.Module):
  """ConvNeXt.

  Attributes:
    widths: channels of the four stages.
    depths: blocks per stage.
    drop_path_rate: stochastic depth of the last block (0 for the first).
    dtype: computation dtype.

  Returns `(x, endpoints)`: the stride-32 map and `stride4` .. `stride32`.
  """

  widths: tuple[int, ...] = (96, 192, 384, 768)
  depths: tuple[int, ...] = (3, 3, 9, 3)
  drop_path_rate: float = 0.3
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths))
    conv = functools.partial(
      layers.Conv, padding=0, use_bias=True, dtype=self.dtype, kernel_init=transformer.trunc_normal
    )
    x = conv(self.widths[0], 4, 4, name="stem")(x)
    x = transformer.layer_norm(EPSILON, self.dtype, "stem_norm")(x)
    endpoints, block = {}, 0
    for stage, (width, depth) in enumerate(zip(self.widths, self.depths, strict=True)):
      if stage > 0:
        x = transformer.layer_norm(EPSILON, self.dtype, f"downsample{stage}_norm")(x)
        x = conv(width, 2, 2, name=f"downsample{stage}")(x)
      for i in range(depth):
        x = ConvNeXtBlock(width, float(rates[block]), self.dtype, name=f"stage{stage}_block{i}")(
          x, train=train
        )
        block += 1
      endpoints[ENDPOINTS[stage]] = transformer.layer_norm(EPSILON, self.dtype, f"norm{stage}")(x)
    return endpoints["stride32"], endpoints


ConvNeXtTiny = functools.partial(ConvNeXt, widths=(96, 192, 384, 768), depths=(3, 3, 9, 3))
ConvNeXtSmall = functools.partial(ConvNeXt, widths=(96, 192, 384, 768), depths=(3, 3, 27, 3))
ConvNeXtBase = functools.partial(ConvNeXt, widths=(128, 256, 512, 1024), depths=(3, 3, 27, 3))
# For tests.
_ConvNeXt_tiny_test = functools.partial(ConvNeXt, widths=(8, 16, 24, 32), depths=(1, 1, 1, 1))
