"""Operations over space and channels that are not convolutions: max pools
with fast gradients, SegNet's unpooling, bilinear resizing, global and
adaptive average pooling, channel concatenation, padding.

Models reach them through `jaxseg.models.layers`, which re-exports them: the
one place every layer of the zoo comes from (a faster formulation is one
change for the whole zoo). Several are jitted under their own names, which
the ONNX export writes as one operation each (`export.to_onnx.named`).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def concat_channels(xs: Sequence[jax.Array]) -> jax.Array:
  """`jnp.concatenate(xs, axis=-1)`. XLA:CPU concatenates bfloat16 4× slower
  than the same bits as uint16 (91 vs 23 ms for two 4×256²×64 maps), so
  bfloat16 goes as bits, with a gradient that slices the same way."""
  if any(x.dtype != jnp.bfloat16 for x in xs):
    return jnp.concatenate(xs, axis=-1)
  return _concat_bf16(tuple(xs))


def _bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(x, jnp.uint16)


def _from_bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(x, jnp.bfloat16)


@jax.custom_vjp
def _concat_bf16(xs: tuple[jax.Array, ...]) -> jax.Array:
  return _from_bits(jnp.concatenate([_bits(x) for x in xs], axis=-1))


def _concat_bf16_fwd(xs):
  return _concat_bf16(xs), tuple(x.shape[-1] for x in xs)


def _concat_bf16_bwd(widths, g):
  bits, start, parts = _bits(g.astype(jnp.bfloat16)), 0, []
  for width in widths:
    parts.append(_from_bits(bits[..., start : start + width]))
    start += width
  return (tuple(parts),)


_concat_bf16.defvjp(_concat_bf16_fwd, _concat_bf16_bwd)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """The ResNet stem's 3×3 stride-2 max pool with PyTorch's padding of 1.

  Computed in float32 (exact for bfloat16 too): XLA:CPU's bfloat16 strided
  slices and compares made its gradient several times slower.
  """
  return _max_pool_3x3_s2(x.astype(jnp.float32)).astype(x.dtype)


def _stem_taps(x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
  """The -inf-padded input and its nine stride-2 taps, in window order."""
  h, w = x.shape[1:3]
  oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  taps = [subsample(padded, 2, (dy, dx), (oh, ow)) for dy in range(3) for dx in range(3)]
  return padded, taps


def subsample(x: jax.Array, stride: int, offset=(0, 0), size=None) -> jax.Array:
  """`x[:, dy::stride, dx::stride]` (the first `size` rows and columns of it)
  as one strided slice, also for symbolic sizes, where numpy-style indexing
  becomes a gather that TFLite's converter refuses."""
  n, h, w, c = x.shape
  dy, dx = offset
  if size is None:
    size = ((h - dy + stride - 1) // stride, (w - dx + stride - 1) // stride)
  limits = (n, dy + stride * (size[0] - 1) + 1, dx + stride * (size[1] - 1) + 1, c)
  return jax.lax.slice(x, (0, dy, dx, 0), limits, (1, stride, stride, 1))


def crop(x: jax.Array, size, offset=(0, 0)) -> jax.Array:
  """`x[:, dy : dy + size[0], dx : dx + size[1]]` as one slice, also for
  symbolic sizes (where indexing becomes a dynamic slice or gather, which
  TFLite's converter refuses)."""
  return subsample(x, 1, offset, size)


# XLA:CPU computes a max pool's gradient (select-and-scatter) very slowly: 244
# ms for one 2×2 pool of 4×256²×64 in bfloat16, 2.5 ms for its forward pass.
# These custom gradients route each output's gradient to the first maximum of
# its window (as select-and-scatter and PyTorch do) with elementwise ops.
@jax.custom_vjp
def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  _, taps = _stem_taps(x)
  return functools.reduce(jnp.maximum, taps)


def _max_pool_3x3_s2_fwd(x):
  y = _max_pool_3x3_s2(x)
  return y, (x, y)


def _max_pool_3x3_s2_bwd(residuals, g):
  x, y = residuals
  padded, taps = _stem_taps(x)
  (_, hp, wp, _), (_, oh, ow, _) = padded.shape, y.shape
  taken = jnp.zeros(y.shape, bool)
  grad = jnp.zeros(padded.shape, g.dtype)
  zero = jnp.zeros((), g.dtype)
  for i, tap in enumerate(taps):
    dy, dx = divmod(i, 3)
    first = (tap == y) & ~taken
    taken = taken | first
    placed = jax.lax.pad(
      jnp.where(first, g, zero),
      zero,
      ((0, 0, 0), (dy, hp - dy - 2 * oh + 1, 1), (dx, wp - dx - 2 * ow + 1, 1), (0, 0, 0)),
    )
    grad = grad + placed
  return (grad[:, 1:-1, 1:-1],)


_max_pool_3x3_s2.defvjp(_max_pool_3x3_s2_fwd, _max_pool_3x3_s2_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 stride-2 max pool, odd sizes rounded up (ceil mode), with a gradient
  that is one unpooling (see `_max_pool_3x3_s2`)."""
  return _max_pool_2x2(x, x.shape[1:3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_2x2(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  del size
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
  return x.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c).max(axis=(2, 4))


def _max_pool_2x2_fwd(x, size):
  pooled, indices = max_pool_2x2_with_argmax(x)
  return pooled, indices


def _max_pool_2x2_bwd(size, indices, g):
  return (max_unpool_2x2(g, indices, size),)


_max_pool_2x2.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def resize_bilinear(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Bilinear resize of `[N, H, W, C]` to `size` (half-pixel centres).

  Matches PyTorch's `interpolate(mode="bilinear", align_corners=False)`
  (no antialiasing), which is how every head here upsamples.

  Written as two gathers and a weighted sum per axis: `jax.image.resize`
  computes the same values with a dense `[out, in]` weight matrix per axis,
  which made the ×8 resize of LR-ASPP's logits to 512×1024 take 58 ms of its
  104 ms on a 2-core CPU.
  """
  h, w = size
  if x.shape[1:3] == (h, w):
    return x
  return _resize_bilinear(x, (h, w))


def upsample_logits(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Float32 `x` bilinearly resized to `size`. Lower-precision logits are
  converted once, into memory, before the resize: XLA:CPU otherwise converts
  inside the resize's gathers, four times per output value (LR-ASPP's last
  resize to 512×1024 took 14 ms from bfloat16 logits, 2.5 ms from float32)."""
  if x.dtype != jnp.float32:
    x = jax.lax.optimization_barrier(x.astype(jnp.float32))
  return resize_bilinear(x, size)


# Jitted under its own name so that the ONNX export writes the call as one
# `Resize` (jaxseg.export.to_onnx.named); XLA inlines it like any function.
@functools.partial(jax.jit, static_argnames="size")
def _resize_bilinear(x: jax.Array, size: tuple) -> jax.Array:
  return _resize_axis(_resize_axis(x, 1, size[0]), 2, size[1])


@jax.jit  # Named for the ONNX export: one `GlobalAveragePool`.
def global_average_pool(x: jax.Array) -> jax.Array:
  """The mean over height and width of `[N, H, W, C]`: `[N, 1, 1, C]`."""
  return jnp.mean(x, axis=(1, 2), keepdims=True)


def _resize_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
  """Linear interpolation of `x` along `axis` to `size` samples, PyTorch's
  `align_corners=False` rule: source position `(i + 0.5) * in / out - 0.5`,
  clamped to the image, between its two neighbouring pixels."""
  n = x.shape[axis]
  if n == size:
    return x
  factor = _whole_factor(size, n)
  if factor is not None:
    return _upsample_axis(x, axis, factor)
  return _gather_axis(x, axis, size)


def _static(*dims) -> bool:
  return all(isinstance(d, (int, np.integer)) for d in dims)


def _whole_factor(size, n) -> int | None:
  """`size / n` if it is a whole number for every value of symbolic
  dimensions (an export's `height / 8` to `height`), else None."""
  if _static(size, n):
    return size // n if size % n == 0 else None
  try:
    factor = size // n
    return int(factor) if _static(factor) and factor * n == size else None
  except Exception:  # An undecidable symbolic comparison.
    return None


def _gather_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
  """`_resize_axis` as two gathers and a weighted sum (symbolic sizes: an
  interpolation-matrix product, `_interpolate_axis`)."""
  n = x.shape[axis]
  if not _static(n, size):
    return _interpolate_axis(x, axis, size)
  source = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
  low = np.minimum(np.floor(source).astype(np.int32), n - 1)
  high = np.minimum(low + 1, n - 1)
  shape = [1] * x.ndim
  shape[axis] = size
  upper = jnp.asarray((source - low).reshape(shape), x.dtype)
  lower = jnp.asarray((1.0 - (source - low)).reshape(shape), x.dtype)
  return jnp.take(x, low, axis=axis) * lower + jnp.take(x, high, axis=axis) * upper


def _interpolate_axis(x: jax.Array, axis: int, size) -> jax.Array:
  """`_resize_axis` for symbolic sizes (an export of any size) as a product
  with the `[size, n]` matrix of interpolation weights, built in the graph
  from iotas: no gather, which TFLite's converter cannot take with symbolic
  indices. The resizes it serves are from or to a few pyramid bins (whole
  factors take `_upsample_by_shifts`), so the matrix stays small."""
  n = x.shape[axis]
  ratio = jnp.float32(n) / jnp.float32(size)
  source = (jnp.arange(size, dtype=jnp.float32) + 0.5) * ratio - 0.5
  source = jnp.clip(source, 0.0, jnp.float32(n) - 1.0)
  # A tent: 1 - distance to each source pixel, for the (at most) two within 1.
  weights = jnp.maximum(1.0 - jnp.abs(source[:, None] - jnp.arange(n, dtype=jnp.float32)), 0.0)
  moved = jnp.moveaxis(x, axis, 0)
  # A 2-D product (TFLite's converter takes no higher-rank one).
  y = weights.astype(x.dtype) @ moved.reshape(n, -1)
  return jnp.moveaxis(y.reshape(size, *moved.shape[1:]), 0, axis)


def _upsample_by_shifts(x: jax.Array, axis: int, factor: int) -> jax.Array:
  """`_upsample_axis`'s values without gathers, for symbolic sizes: each of
  the `factor` output phases is a weighted sum of the input shifted by -1, 0
  and +1 (edges repeated), and the phases are interleaved by a reshape."""
  n = x.shape[axis]
  part = functools.partial(jax.lax.slice_in_dim, x, axis=axis)
  edged = jnp.concatenate([part(0, 1), x, part(n - 1, n)], axis=axis)
  shifted = [jax.lax.slice_in_dim(edged, d, d + n, axis=axis) for d in range(3)]
  table = _upsampling_table(factor)
  phases = [
    sum(float(w) * s for w, s in zip(table[:, r], shifted, strict=True) if w) for r in range(factor)
  ]
  y = _stack(phases, axis + 1)
  return y.reshape(*x.shape[:axis], factor * n, *x.shape[axis + 1 :])


def _stack(xs: Sequence[jax.Array], axis: int) -> jax.Array:
  """`jnp.stack` as a concatenation (which the ONNX translator knows)."""
  return jnp.concatenate([jax.lax.expand_dims(x, (axis,)) for x in xs], axis=axis)


def _upsampling_table(factor: int) -> np.ndarray:
  """`[3, factor]`: output `factor*j + r` of a whole-`factor` upsampling is
  `sum_d table[d, r] * x[j - 1 + d]` (indices clamped to the image, PyTorch's
  `align_corners=False` rule: its offset from `j` is `(r + 0.5)/factor - 0.5`)."""
  table = np.zeros((3, factor))
  for r in range(factor):
    offset = (r + 0.5) / factor - 0.5
    low = int(np.floor(offset))  # -1 or 0: the left neighbour is j - 1 or j.
    table[1 + low, r] += 1.0 - (offset - low)
    table[2 + low, r] += offset - low
  return table


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _upsample_axis(x: jax.Array, axis: int, factor: int) -> jax.Array:
  """`_resize_axis` by a whole `factor`: the gathers forward, and a gradient
  written as weighted sums of the output gradient's `factor` phases. The
  gathers' own gradient is a scatter-add, XLA:CPU's slowest operations in
  SegFormer-B0's training step."""
  if not _static(x.shape[axis]):
    return _upsample_by_shifts(x, axis, factor)
  return _gather_axis(x, axis, factor * x.shape[axis])


def _upsample_forward(x, axis, factor):
  return _upsample_axis(x, axis, factor), None


def _upsample_backward(axis, factor, _, g):
  n = g.shape[axis] // factor
  phases = g.reshape(*g.shape[:axis], n, factor, *g.shape[axis + 1 :])
  phase = [jax.lax.index_in_dim(phases, r, axis + 1, keepdims=False) for r in range(factor)]
  table = _upsampling_table(factor)
  # sums[d][j]: what output block j sends to input j - 1 + d.
  sums = [sum(float(w) * p for w, p in zip(table[d], phase, strict=True) if w) for d in range(3)]
  pad = [(0, 0)] * g.ndim
  to_padded = sum(
    jnp.pad(sums[d], [*pad[:axis], (d, 2 - d), *pad[axis + 1 :]]) for d in range(3)
  )  # to_padded[m]: the gradient of x[m - 1], unclamped (m in 0 .. n + 1).
  part = functools.partial(jax.lax.slice_in_dim, to_padded, axis=axis)
  if n == 1:
    return (part(0, 1) + part(1, 2) + part(2, 3),)
  first, last = part(0, 1) + part(1, 2), part(n, n + 1) + part(n + 1, n + 2)
  return (jnp.concatenate([first, part(2, n), last], axis=axis),)


_upsample_axis.defvjp(_upsample_forward, _upsample_backward)


def adaptive_avg_pool(x: jax.Array, bins: int) -> jax.Array:
  """PyTorch's `adaptive_avg_pool2d`: `[N, H, W, C]` -> `[N, bins, bins, C]`.

  Bin `i` averages rows `floor(i*H/bins)` to `ceil((i+1)*H/bins)`, so any H, W
  work (bins may overlap when H is not a multiple of `bins`). Written as two
  small averaging matrices built at trace time; for symbolic H, W (an export
  of any size) as the means of `bins` slices per axis.
  """
  if not _static(*x.shape[1:3]):
    return _adaptive_avg_pool_axis(_adaptive_avg_pool_axis(x, 1, bins), 2, bins)

  def averaging_matrix(n: int) -> np.ndarray:
    m = np.zeros((bins, n), np.float32)
    for i in range(bins):
      start, end = (i * n) // bins, -((-(i + 1) * n) // bins)
      m[i, start:end] = 1.0 / (end - start)
    return m

  n, h, w, c = x.shape
  ph = jnp.asarray(averaging_matrix(h), x.dtype)
  pw = jnp.asarray(averaging_matrix(w), x.dtype)
  # As 2-D products (TFLite's converter takes no rank-4 one): rows, then columns.
  y = (ph @ x.transpose(1, 0, 2, 3).reshape(h, -1)).reshape(bins, n, w, c)
  y = (pw @ y.transpose(2, 1, 0, 3).reshape(w, -1)).reshape(bins, n, bins, c)
  return y.transpose(1, 2, 0, 3)


def _adaptive_avg_pool_axis(x: jax.Array, axis: int, bins: int) -> jax.Array:
  n = x.shape[axis]
  means = []
  for i in range(bins):
    start, end = (i * n) // bins, -((-(i + 1) * n) // bins)
    part = jax.lax.slice_in_dim(x, start, end, axis=axis)
    means.append(jnp.mean(part, axis=axis, keepdims=True, dtype=jnp.float32).astype(x.dtype))
  return jnp.concatenate(means, axis=axis)


def max_pool_2x2_with_argmax(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """2×2 stride-2 max pool that also records where each maximum came from.

  Odd sizes are rounded up ("ceil mode"): the last row/column is pooled over
  the pixels that exist. On ties the first maximum in row-major window order
  wins, as in PyTorch.

  Args:
    x: `[N, H, W, C]`.

  Returns:
    `(pooled, indices)`: `[N, ceil(H/2), ceil(W/2), C]` values and int32
    indices in `{0, 1, 2, 3}` = `2 * dy + dx` within each window.
  """
  n, h, w, c = x.shape
  if not _static(h, w):
    return _max_pool_2x2_with_argmax_by_selects(x)
  x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
  windows = x.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  windows = windows.reshape(n, (h + 1) // 2, (w + 1) // 2, 4, c)
  indices = jnp.argmax(windows, axis=3).astype(jnp.int32)
  pooled = jnp.take_along_axis(windows, indices[:, :, :, None], axis=3)[:, :, :, 0]
  return pooled, indices


def _max_pool_2x2_with_argmax_by_selects(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The same for symbolic sizes (an export of any size) as elementwise
  selects: TFLite's converter takes neither argmax nor gathers."""
  size = [(d + 1) // 2 for d in x.shape[1:3]]
  x = pad_bottom_right(x, [2 * s for s in size], -jnp.inf)
  candidates = [subsample(x, 2, (dy, dx), size) for dy in (0, 1) for dx in (0, 1)]
  best = functools.reduce(jnp.maximum, candidates)
  indices, pooled = jnp.full(best.shape, 3, jnp.int32), candidates[3]
  for k in (2, 1, 0):  # The first maximum wins.
    hit = candidates[k] == best
    indices, pooled = jnp.where(hit, k, indices), jnp.where(hit, candidates[k], pooled)
  return pooled, indices


def max_unpool_2x2(x: jax.Array, indices: jax.Array, size: Sequence[int]) -> jax.Array:
  """SegNet's upsampling: puts each value back where its maximum came from.

  The inverse placement of `max_pool_2x2_with_argmax`: every other pixel of
  each 2×2 window is zero. Written as a one-hot product and a reshape (no
  scatter), so its gradient is as cheap as the forward pass.

  Args:
    x: `[N, h, w, C]` values.
    indices: `[N, h, w, C]` window positions from `max_pool_2x2_with_argmax`.
    size: `(H, W)` of the tensor that was pooled (`h == ceil(H / 2)`).

  Returns:
    `[N, H, W, C]`.
  """
  n, h, w, c = x.shape
  if not _static(h, w):
    # Symbolic sizes (an export): rank-4 selects, the windows' columns and
    # rows interleaved by reshapes (TFLite's converter takes no rank-5 one-hot).
    zero = jnp.zeros((), x.dtype)
    placed = [jnp.where(indices == k, x, zero) for k in range(4)]  # Window position k.
    rows = [_stack(placed[2 * dy : 2 * dy + 2], 3).reshape(n, h, 2 * w, c) for dy in (0, 1)]
    return crop(_stack(rows, 2).reshape(n, 2 * h, 2 * w, c), size)
  placed = jax.nn.one_hot(indices, 4, axis=3, dtype=x.dtype) * x[:, :, :, None, :]
  placed = placed.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return placed.reshape(n, 2 * h, 2 * w, c)[:, : size[0], : size[1]]


def pad_bottom_right(x: jax.Array, size, value=0.0) -> jax.Array:
  """Pads `[N, H, W, C]` at the bottom and right to `size` with `value` (a
  scalar or one per channel); for symbolic sizes (an export of any size) by
  concatenation, as TFLite's converter takes no pad of a symbolic amount."""
  n, h, w, c = x.shape
  if _static(h, w, *size) and (h, w) == tuple(size):
    return x
  if _static(h, w, *size) and np.ndim(value) == 0:
    return jnp.pad(x, ((0, 0), (0, size[0] - h), (0, size[1] - w), (0, 0)), constant_values=value)
  fill = jnp.asarray(value, x.dtype)
  x = jnp.concatenate([x, jnp.broadcast_to(fill, (n, size[0] - h, w, c))], axis=1)
  return jnp.concatenate([x, jnp.broadcast_to(fill, (n, size[0], size[1] - w, c))], axis=2)


def pad_to_multiple(x: jax.Array, multiple: int, value=0.0) -> jax.Array:
  """Pads `[N, H, W, C]` at the bottom/right so H and W divide by `multiple`
  (the size written as a multiple, so that symbolic sizes simplify)."""
  return pad_bottom_right(x, [multiple * (-(-d // multiple)) for d in x.shape[1:3]], value)
