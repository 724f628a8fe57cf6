"""Formulations of convolution and matmul that XLA:CPU runs fast in bfloat16;
each computes what the plain operation computes (tested against it).

Where the oneDNN library is built (`onednn`), layers run every convolution
there instead, faster than these; these are the bfloat16 path of machines
without it (`config.conv_backend="xla"`, or no library).

Measured on a 2-core AVX-512 CPU with jaxlib 0.10: XLA:CPU computes a
bfloat16 convolution, and a `bfloat16 x bfloat16 -> bfloat16` dot, in float32
(180-330 GFLOP/s); only `dot_general` with bfloat16 operands and
`preferred_element_type=float32` reaches the bf16 units (1,600 GFLOP/s on a
2048³ matmul on the first machine measured). So:

- `matmul` (1×1 convolutions) is that dot, with a backward pass of the same
  kind (autodiff alone would give mixed float32 x bfloat16 dots);
- `bf16_conv` writes a k×k convolution as k matmuls over rows of horizontal
  taps (the input copied k times, not k² as in im2col): 243 vs 216 GFLOP/s
  for XLA's convolution at 128 channels, 417 vs 245 at 256, 654 vs 293 at 512
  (forward, batch 8); slower below 128 input channels and for most narrow
  outputs (`rows_win`), where layers keep XLA's.

In float32 XLA's own convolution is faster than either formulation, and a
weight gradient computed as an im2col matmul made whole float32 models slower
(DeepLabV3-R50 training 0.85 -> 0.74 img/s), so float32 keeps XLA's.
"""

import functools

import jax
import jax.numpy as jnp


def applies(dtype) -> bool:
  """Whether layers computing in `dtype` take these formulations: bfloat16 on
  the CPU backend (GPU and TPU keep XLA's own operations)."""
  return jax.default_backend() == "cpu" and dtype == jnp.bfloat16


def _dot(a: jax.Array, b: jax.Array, contract: tuple[tuple[int, ...], tuple[int, ...]]):
  """`dot_general` accumulating in float32, result in `a`'s dtype."""
  out = jax.lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=jnp.float32)
  return out.astype(a.dtype)


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """`x @ w` over the last axis of `x` (`[..., K] @ [K, N]`), accumulated in
  float32 whatever the operands' dtype."""
  return _dot(x, w, ((x.ndim - 1,), (0,)))


def _matmul_fwd(x, w):
  return matmul(x, w), (x, w)


def _matmul_bwd(residuals, g):
  x, w = residuals
  g = g.astype(x.dtype)
  dx = _dot(g, w, ((g.ndim - 1,), (1,)))
  batch = tuple(range(x.ndim - 1))
  dw = _dot(x, g, (batch, batch)).astype(w.dtype)
  return dx, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _xla_conv(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
  """Stride-1 convolution padded to keep the size (PyTorch's `padding=d*(k-1)/2`)."""
  pad = dilation * (kernel.shape[0] - 1) // 2
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(1, 1),
    padding=((pad, pad), (pad, pad)),
    rhs_dilation=(dilation, dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


def _row_taps(x: jax.Array, k: int, dilation: int) -> jax.Array:
  """`[N, H, W, C]` -> `[N, H + 2p, W, k*C]`: the zero-padded input with its k
  horizontal (dilated) taps side by side in the channels, j-major as in a
  kernel row `w[i].reshape(k*C, -1)`."""
  pad = dilation * (k - 1) // 2
  w = x.shape[2]
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return jnp.concatenate([xp[:, :, j * dilation : j * dilation + w] for j in range(k)], axis=-1)


def _rows_conv(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
  """The convolution as k matmuls of row-shifted tap slices (K = k*C each)."""
  k, h = kernel.shape[0], x.shape[1]
  rows = _row_taps(x, k, dilation)
  out = 0
  for i in range(k):
    tap = rows[:, i * dilation : i * dilation + h]
    out = out + jax.lax.dot_general(
      tap,
      kernel[i].reshape(-1, kernel.shape[-1]),
      (((3,), (0,)), ((), ())),
      preferred_element_type=jnp.float32,
    )
  return out.astype(x.dtype)


# Below this many input channels a row matmul has too short a contraction to
# beat XLA's convolution (measured: 126 vs 185 GFLOP/s at 64 channels; 243 vs
# 216 at 128, 654 vs 293 at 512).
ROWS_MIN_CHANNELS = 128


def rows_win(height: int, width: int, in_channels: int, out_channels: int) -> bool:
  """Whether the row-tap matmuls beat XLA's bfloat16 convolution at this shape.

  Measured forward, batch 8: they lose below 128 input channels, and with
  fewer than 256 output channels unless the map is small and the channels do
  not shrink (U-Net's 128->64 at 256²: 597 vs 387 ms; 256->128 at 64²: 85 vs
  66 ms; 128->128 at 32²: 3.8 vs 7.0 ms; 1024->512 at 32²: 148 vs 216 ms).
  """
  if in_channels < ROWS_MIN_CHANNELS:
    return False
  return out_channels >= 256 or (out_channels >= in_channels and height * width <= 64 * 64)


def _conv_any(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
  if rows_win(x.shape[1], x.shape[2], x.shape[3], kernel.shape[3]):
    return _rows_conv(x, kernel, dilation)
  return _xla_conv(x, kernel, dilation).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def bf16_conv(x: jax.Array, kernel: jax.Array, dilation: int = 1) -> jax.Array:
  """Stride-1, size-preserving convolution (odd square HWIO `kernel`) for
  bfloat16 operands, accumulated in float32 on the CPU's bf16 units as k
  matmuls over rows of taps (layers use it where `rows_win`). The backward
  pass: the input gradient the same way where `rows_win` (else by XLA's
  convolution), the kernel gradient as k
  matmuls of the same row taps with the output gradient."""
  return _rows_conv(x, kernel, dilation)


def _bf16_conv_fwd(x, kernel, dilation):
  return _rows_conv(x, kernel, dilation), (x, kernel)


def _bf16_conv_bwd(dilation, residuals, g):
  x, kernel = residuals
  g = g.astype(x.dtype)
  flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
  dx = _conv_any(g, flipped, dilation)
  k, h = kernel.shape[0], x.shape[1]
  rows = _row_taps(x, k, dilation)
  dkernel = jnp.stack(
    [
      jax.lax.dot_general(
        rows[:, i * dilation : i * dilation + h],
        g,
        (((0, 1, 2), (0, 1, 2)), ((), ())),
        preferred_element_type=jnp.float32,
      )
      for i in range(k)
    ]
  )
  return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


bf16_conv.defvjp(_bf16_conv_fwd, _bf16_conv_bwd)
