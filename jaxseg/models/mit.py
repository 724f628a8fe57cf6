"""Mix Transformer (MiT), SegFormer's encoder.

Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation
with Transformers", NeurIPS 2021, https://arxiv.org/abs/2105.15203, as
Hugging Face transformers' `SegformerModel` computes it (whose checkpoints
`models.published` imports): four stages, each an overlapping patch embedding
(a 7×7 stride-4, then 3×3 stride-2 convolution with LayerNorm), blocks of
efficient self-attention (keys and values reduced by a strided convolution of
ratio 8/4/2/1) and Mix-FFN (fc, 3×3 depthwise convolution, GELU, fc), with
stochastic depth rising linearly to `drop_path_rate`, and a LayerNorm.
Endpoints `stride4` .. `stride32` are the four stages' maps.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg.models import layers, transformer

ENDPOINTS = ("stride4", "stride8", "stride16", "stride32")


class EfficientSelfAttention(nn.Module):
  """Attention whose keys and values come from the map reduced `sr_ratio`
  times by a strided convolution (PVT's spatial reduction)."""

  dim: int
  heads: int
  sr_ratio: int
  epsilon: float
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    tokens = x.reshape(n, h * w, c)
    dense = functools.partial(transformer.Dense, self.dim, dtype=self.dtype)
    query = dense(name="query")(tokens)
    context = tokens
    if self.sr_ratio > 1:
      reduced = layers.Conv(
        self.dim, self.sr_ratio, self.sr_ratio, padding=0, use_bias=True, dtype=self.dtype,
        name="sr",
      )(x)  # fmt: skip
      context = transformer.layer_norm(self.epsilon, self.dtype, "sr_norm")(
        reduced.reshape(n, -1, c)
      )
    out = transformer.attention(
      query, dense(name="key")(context), dense(name="value")(context), self.heads
    )
    return dense(name="out")(out).reshape(n, h, w, c)


class MixFFN(nn.Module):
  """fc -> 3×3 depthwise convolution -> GELU -> fc: the convolution gives the
  position information that a fixed position embedding would tie to one size."""

  dim: int
  hidden: int
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = transformer.Dense(self.hidden, dtype=self.dtype, name="fc1")(x)
    x = layers.Conv(
      self.hidden, 3, groups=self.hidden, use_bias=True, dtype=self.dtype, name="dwconv"
    )(x)
    x = transformer.gelu(x.astype(jnp.float32)).astype(self.dtype)
    return transformer.Dense(self.dim, dtype=self.dtype, name="fc2")(x)


class MiTBlock(nn.Module):
  """Pre-norm block: `x + attn(norm1(x))`, then `x + ffn(norm2(x))`."""

  dim: int
  heads: int
  sr_ratio: int
  mlp_ratio: int
  drop_path: float
  epsilon: float
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    norm = functools.partial(transformer.layer_norm, self.epsilon, self.dtype)
    y = EfficientSelfAttention(
      self.dim, self.heads, self.sr_ratio, self.epsilon, self.dtype, name="attention"
    )(norm("norm1")(x))
    x = x + transformer.drop_path(self, y, self.drop_path, train=train)
    y = MixFFN(self.dim, self.dim * self.mlp_ratio, self.dtype, name="mlp")(norm("norm2")(x))
    return x + transformer.drop_path(self, y, self.drop_path, train=train)


class MixTransformer(nn.Module):
  """MiT: the SegFormer encoder.

  Attributes:
    widths: channels of the four stages.
    depths: blocks per stage.
    heads: attention heads per stage.
    sr_ratios: key/value reduction per stage (8, 4, 2, 1).
    mlp_ratio: Mix-FFN's hidden width over the stage's.
    drop_path_rate: stochastic depth of the last block (0 for the first).
    epsilon: the LayerNorms' (transformers': PyTorch's default 1e-5).
    dtype: computation dtype.

  Returns `(x, endpoints)`: the stride-32 map and `stride4` .. `stride32`.
  """

  widths: tuple[int, ...] = (32, 64, 160, 256)
  depths: tuple[int, ...] = (2, 2, 2, 2)
  heads: tuple[int, ...] = (1, 2, 5, 8)
  sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
  mlp_ratio: int = 4
  drop_path_rate: float = 0.1
  epsilon: float = 1e-5
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths))
    endpoints, block = {}, 0
    for stage, (width, depth) in enumerate(zip(self.widths, self.depths, strict=True)):
      patch = 7 if stage == 0 else 3
      x = layers.Conv(
        width, patch, 4 if stage == 0 else 2, use_bias=True, dtype=self.dtype,
        kernel_init=transformer.trunc_normal, name=f"stage{stage}_patch_embed",
      )(x)  # fmt: skip
      x = transformer.layer_norm(self.epsilon, self.dtype, f"stage{stage}_patch_norm")(x)
      for i in range(depth):
        x = MiTBlock(
          width, self.heads[stage], self.sr_ratios[stage], self.mlp_ratio, float(rates[block]),
          self.epsilon, self.dtype, name=f"stage{stage}_block{i}",
        )(x, train=train)  # fmt: skip
        block += 1
      x = transformer.layer_norm(self.epsilon, self.dtype, f"stage{stage}_norm")(x)
      endpoints[ENDPOINTS[stage]] = x
    return x, endpoints


# The paper's B0..B5 (Table 6): widths, depths; heads 1/2/5/8 throughout.
_WIDE = (64, 128, 320, 512)
MiT_B0 = functools.partial(MixTransformer, widths=(32, 64, 160, 256), depths=(2, 2, 2, 2))
MiT_B1 = functools.partial(MixTransformer, widths=_WIDE, depths=(2, 2, 2, 2))
MiT_B2 = functools.partial(MixTransformer, widths=_WIDE, depths=(3, 4, 6, 3))
MiT_B3 = functools.partial(MixTransformer, widths=_WIDE, depths=(3, 4, 18, 3))
MiT_B4 = functools.partial(MixTransformer, widths=_WIDE, depths=(3, 8, 27, 3))
MiT_B5 = functools.partial(MixTransformer, widths=_WIDE, depths=(3, 6, 40, 3))
# For tests: narrow and one block per stage.
_MiT_tiny = functools.partial(
  MixTransformer, widths=(8, 16, 24, 32), depths=(1, 1, 1, 1), heads=(1, 2, 3, 4)
)
