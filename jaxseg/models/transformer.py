"""The blocks of the transformer-era networks (SegFormer's MiT, Swin, ConvNeXt).

Like `layers`, one place for how they compute: linear layers accumulate in
float32 whatever the dtype (bfloat16 on the CPU through `fast_ops.matmul`,
the form that reaches the bf16 units), layer norms compute in float32,
attention is `jax.nn.dot_product_attention` (cuDNN's fused kernel on GPU),
and stochastic depth draws from the `dropout` stream per example. Parameter
names follow Flax (`kernel` `[in, out]`, `scale`, `bias`), so weight
importers only rename and transpose.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg.models import fast_ops, layers

# timm's and mmsegmentation's initialisation of transformer weights.
trunc_normal = nn.initializers.truncated_normal(0.02)


def matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`x @ kernel` over the last axis, accumulated in float32, in `x`'s dtype
  (bfloat16 on the CPU through `fast_ops.matmul`, which reaches the bf16 units)."""
  if fast_ops.applies(x.dtype):
    return fast_ops.matmul(x, kernel)
  return jax.lax.dot_general(
    x, kernel, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
  ).astype(x.dtype)


class Dense(nn.Module):
  """`x @ kernel + bias` over the last axis, accumulated in float32.

  Attributes:
    features: output width.
    use_bias: whether to add a bias.
    dtype: computation dtype; parameters stay float32.
  """

  features: int
  use_bias: bool = True
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", trunc_normal, (x.shape[-1], self.features), jnp.float32)
    y = matmul(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(
        self.dtype
      )
    return y


def layer_norm(epsilon: float, dtype: layers.Dtype, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm over the last axis, statistics in float32, output in `dtype`."""
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, name=name)


def drop_path(module: nn.Module, x: jax.Array, rate: float, *, train: bool) -> jax.Array:
  """Stochastic depth (Huang et al. 2016): in training, the residual branch
  `x` of each example is dropped with probability `rate` and the kept ones
  scaled by `1 / (1 - rate)`; the identity in evaluation."""
  if not train or rate == 0.0:
    return x
  keep = jax.random.bernoulli(
    module.make_rng("dropout"), 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1)
  )
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)).astype(x.dtype)


def attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  heads: int,
  bias: jax.Array | None = None,
) -> jax.Array:
  """Multi-head scaled dot-product attention of `[N, T, C]` tokens over
  `[N, S, C]` ones (`heads` heads of `C / heads`), softmax in float32;
  `bias`: `[N or 1, heads, T, S]` added to the scores (Swin's). Returns `[N, T, C]`."""
  n, t, c = query.shape
  split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, c // heads)
  out = jax.nn.dot_product_attention(split(query), split(key), split(value), bias=bias)
  return out.reshape(n, t, c)


def gelu(x: jax.Array) -> jax.Array:
  """GELU as PyTorch's default computes it, `x Φ(x)` with the exact `erf`
  (written with `erf`, which ONNX has, where `jax.nn.gelu` uses `erfc`)."""
  erf = _elementary_erf if _ELEMENTARY_ERF else jax.lax.erf
  return 0.5 * x * (1.0 + erf(x * np.float32(1 / np.sqrt(2))))


_ELEMENTARY_ERF = []


@contextlib.contextmanager
def elementary_erf():
  """Within: `gelu` computes `erf` from exp, multiplications and additions
  (Abramowitz & Stegun 7.1.26, error below 1.5e-7): TensorFlow's TFLite
  converter cannot read the composite that `lax.erf` is serialised as."""
  _ELEMENTARY_ERF.append(True)
  try:
    yield
  finally:
    _ELEMENTARY_ERF.pop()


def _elementary_erf(x: jax.Array) -> jax.Array:
  a = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
  z = jnp.abs(x)
  t = 1.0 / (1.0 + 0.3275911 * z)
  poly = t * (a[0] + t * (a[1] + t * (a[2] + t * (a[3] + t * a[4]))))
  return jnp.sign(x) * (1.0 - poly * jnp.exp(-z * z))
