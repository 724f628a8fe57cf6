"""Swin Transformer (Liu et al. 2021, https://arxiv.org/abs/2103.14030) as a
segmentation backbone.

A 4×4 stride-4 patch embedding with LayerNorm; four stages of blocks that
attend within 7×7 windows, every second block with the windows shifted by
half a window (a cyclic roll, with a mask so that tokens attend only to
tokens that were neighbours before the roll), each attention with a learned
relative position bias; patch merging (2×2 neighbours concatenated,
LayerNorm, a linear layer to twice the width) between stages. Maps are
padded on the bottom and right to a multiple of the window (and of 2 before
merging), as transformers' `SwinBackbone` and mmsegmentation do. Endpoints
`stride4` .. `stride32` are each stage's map before merging, through a
LayerNorm of its own (`norm{i}`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg.models import layers, transformer

ENDPOINTS = ("stride4", "stride8", "stride16", "stride32")


def relative_position_index(window: int) -> np.ndarray:
  """`[w², w²]`: the row of the bias table for each pair of window positions."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
  relative = coords[:, :, None] - coords[:, None, :] + window - 1
  return relative[0] * (2 * window - 1) + relative[1]


def shift_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
  """`[windows, w², w²]`: 0 where two positions of a shifted window were
  neighbours before the roll, -100 where they were not. A NumPy constant, or
  computed in the graph for symbolic sizes (an export of any size)."""
  xp = np if all(isinstance(d, int) for d in (height, width)) else jnp
  region = lambda n: (xp.arange(n) >= n - window).astype(np.int32) + (xp.arange(n) >= n - shift)
  image = region(height)[:, None] * 3 + region(width)[None, :]
  windows = partition(image[None, :, :, None], window).reshape(-1, window * window)
  return xp.where(windows[:, None, :] != windows[:, :, None], -100.0, 0.0).astype(np.float32)


def partition(x, window: int):
  """`[N, H, W, C]` -> `[N * H/w * W/w, w, w, C]` windows, row-major."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // window, window, w // window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def merge(windows: jax.Array, n: int, h: int, w: int) -> jax.Array:
  """The inverse of `partition`."""
  window, c = windows.shape[1], windows.shape[-1]
  x = windows.reshape(n, h // window, w // window, window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)


class WindowAttention(nn.Module):
  """Multi-head attention within windows, with a relative position bias."""

  dim: int
  heads: int
  window: int
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, windows: jax.Array, mask: np.ndarray | None) -> jax.Array:
    table = self.param(
      "relative_position_bias_table", transformer.trunc_normal,
      ((2 * self.window - 1) ** 2, self.heads), jnp.float32,
    )  # fmt: skip
    area = self.window**2
    bias = table[relative_position_index(self.window).reshape(-1)].reshape(area, area, self.heads)
    bias = bias.transpose(2, 0, 1)[None]  # [1, heads, area, area]
    count = windows.shape[0]
    if mask is not None:  # Per window: [count, heads, area, area].
      per_image = bias + jnp.asarray(mask)[:, None]
      images = count // mask.shape[0]
      bias = jnp.broadcast_to(per_image[None], (images, *per_image.shape))
      bias = bias.reshape(count, *per_image.shape[1:])
    tokens = windows.reshape(count, area, self.dim)
    dense = functools.partial(transformer.Dense, self.dim, dtype=self.dtype)
    out = transformer.attention(
      dense(name="query")(tokens), dense(name="key")(tokens), dense(name="value")(tokens),
      self.heads, bias=bias.astype(jnp.float32),
    )  # fmt: skip
    return dense(name="out")(out).reshape(windows.shape)


class SwinBlock(nn.Module):
  """`x + attn(norm1(x))` in (shifted) windows, then `x + mlp(norm2(x))`."""

  dim: int
  heads: int
  window: int
  shift: int
  drop_path: float
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    n, h, w, c = x.shape
    y = transformer.layer_norm(1e-5, self.dtype, "norm1")(x)
    # Padded to whole windows (written as a multiple, so that symbolic sizes
    # of an export simplify).
    hp, wp = (self.window * (-(-d // self.window)) for d in (h, w))
    y = layers.pad_bottom_right(y, (hp, wp))
    mask = None
    if self.shift:
      y = jnp.roll(y, (-self.shift, -self.shift), axis=(1, 2))
      mask = shift_mask(hp, wp, self.window, self.shift)
    y = WindowAttention(self.dim, self.heads, self.window, self.dtype, name="attention")(
      partition(y, self.window), mask
    )
    y = merge(y, n, hp, wp)
    if self.shift:
      y = jnp.roll(y, (self.shift, self.shift), axis=(1, 2))
    x = x + transformer.drop_path(self, layers.crop(y, (h, w)), self.drop_path, train=train)
    y = transformer.layer_norm(1e-5, self.dtype, "norm2")(x)
    y = transformer.Dense(4 * c, dtype=self.dtype, name="fc1")(y)
    y = transformer.gelu(y.astype(jnp.float32)).astype(self.dtype)
    y = transformer.Dense(c, dtype=self.dtype, name="fc2")(y)
    return x + transformer.drop_path(self, y, self.drop_path, train=train)


class PatchMerging(nn.Module):
  """2×2 neighbours concatenated (padding an odd side), LayerNorm, linear to `2C`."""

  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    x = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
    x = jnp.concatenate([layers.subsample(x, 2, (r, s)) for s in range(2) for r in range(2)], -1)
    x = transformer.layer_norm(1e-5, self.dtype, "norm")(x)
    return transformer.Dense(2 * c, use_bias=False, dtype=self.dtype, name="reduction")(x)


class SwinTransformer(nn.Module):
  """Swin.

  Attributes:
    width: channels of the first stage (doubling per stage).
    depths: blocks per stage.
    heads: attention heads per stage.
    window: window size (7).
    drop_path_rate: stochastic depth of the last block (0 for the first).
    dtype: computation dtype.

  Returns `(x, endpoints)`: the stride-32 map and `stride4` .. `stride32`.
  """

  width: int = 96
  depths: tuple[int, ...] = (2, 2, 6, 2)
  heads: tuple[int, ...] = (3, 6, 12, 24)
  window: int = 7
  drop_path_rate: float = 0.3
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    x = jnp.pad(x, ((0, 0), (0, -x.shape[1] % 4), (0, -x.shape[2] % 4), (0, 0)))
    x = layers.Conv(
      self.width, 4, 4, padding=0, use_bias=True, dtype=self.dtype,
      kernel_init=transformer.trunc_normal, name="patch_embed",
    )(x)  # fmt: skip
    x = transformer.layer_norm(1e-5, self.dtype, "patch_norm")(x)
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths))
    endpoints, block = {}, 0
    for stage, depth in enumerate(self.depths):
      width = self.width * 2**stage
      for i in range(depth):
        x = SwinBlock(
          width, self.heads[stage], self.window, self.window // 2 if i % 2 else 0,
          float(rates[block]), self.dtype, name=f"stage{stage}_block{i}",
        )(x, train=train)  # fmt: skip
        block += 1
      endpoints[ENDPOINTS[stage]] = transformer.layer_norm(1e-5, self.dtype, f"norm{stage}")(x)
      if stage < len(self.depths) - 1:
        x = PatchMerging(self.dtype, name=f"stage{stage}_merge")(x)
    return endpoints["stride32"], endpoints


SwinTiny = functools.partial(SwinTransformer, width=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24))
SwinSmall = functools.partial(SwinTransformer, width=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24))
SwinBase = functools.partial(SwinTransformer, width=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32))
# For tests: narrow, one block per stage but two in the first (a shifted one).
_Swin_tiny_test = functools.partial(
  SwinTransformer, width=8, depths=(2, 1, 1, 1), heads=(1, 2, 2, 4), window=4
)
