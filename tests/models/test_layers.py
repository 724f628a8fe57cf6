"""Each building block against an independent reference."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxseg.models import layers


def _apply(module, x):
  variables = module.init(jax.random.key(0), x)
  return variables, np.asarray(module.apply(variables, x))


@pytest.fixture(scope="module")
def tf():
  return pytest.importorskip("tensorflow")


@pytest.mark.parametrize(
  "kernel_size,rate,size,padding",
  [
    (k, r, s, p)
    for k, r, s, p in itertools.product(
      (1, 2, 3, 5), (1, 2, 4), ((17, 14), (16, 19)), ("SAME", "VALID")
    )
    if min(s) > (k - 1) * r or p == "SAME"
  ],
)
def test_atrous_conv_equals_tensorflow(tf, kernel_size, rate, size, padding):
  x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
  conv = layers.Conv(4, kernel_size, dilation=rate, padding=padding, use_bias=False)
  variables, ours = _apply(conv, x)
  kernel = np.asarray(variables["params"]["kernel"])
  theirs = tf.nn.atrous_conv2d(x, kernel, rate=rate, padding=padding).numpy()
  assert ours.shape == theirs.shape
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size,rate", [(3, 1), (3, 2), (3, 6), (5, 3)])
def test_default_padding_is_same_for_odd_kernels(tf, kernel_size, rate):
  x = np.random.default_rng(1).normal(size=(1, 13, 10, 2)).astype(np.float32)
  variables, ours = _apply(layers.Conv(3, kernel_size, dilation=rate), x)
  kernel = np.asarray(variables["params"]["kernel"])
  theirs = tf.nn.atrous_conv2d(x, kernel, rate=rate, padding="SAME").numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_one_by_one_matmul_path_equals_convolution():
  x = np.random.default_rng(2).normal(size=(2, 9, 7, 5)).astype(np.float32)
  for strides in (1, 2):
    variables, ours = _apply(layers.Conv(6, 1, strides=strides), x)
    kernel = variables["params"]["kernel"]
    ref = jax.lax.conv_general_dilated(
      x, kernel, (strides, strides), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def _scatter_reference(x, kernel, stride):
  """Transposed convolution by definition: input pixel i adds x[i] @ W[p] at s*i + p."""
  n, h, w, _ = x.shape
  k = kernel.shape[0]
  out = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[-1]))
  for i in range(h):
    for j in range(w):
      patch = np.einsum("nc,pqcd->npqd", x[:, i, j], kernel)
      out[:, stride * i : stride * i + k, stride * j : stride * j + k] += patch
  return out


@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (4, 2), (16, 8), (64, 32), (3, 2), (5, 1)])
def test_conv_transpose_equals_definition(kernel_size, stride):
  x = np.random.default_rng(3).normal(size=(2, 4, 3, 3)).astype(np.float32)
  variables, ours = _apply(layers.ConvTranspose(5, kernel_size, stride), x)
  ref = _scatter_reference(x, np.asarray(variables["params"]["kernel"]), stride)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_conv_transpose_gradient_equals_reference_gradient():
  x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 3, 3, 2)), jnp.float32)
  module = layers.ConvTranspose(2, 4, 2)
  variables = module.init(jax.random.key(0), x)
  fast = jax.grad(lambda v: jnp.sum(module.apply(v, x) ** 2))(variables)
  ref = jax.grad(
    lambda v: jnp.sum(
      jax.lax.conv_transpose(
        x,
        v["params"]["kernel"],
        (2, 2),
        "VALID",
        dimension_numbers=("NHWC", "HWOI", "NHWC"),
        transpose_kernel=True,
      )
      ** 2
    )
  )(variables)
  np.testing.assert_allclose(fast["params"]["kernel"], ref["params"]["kernel"], rtol=1e-4)


def test_bilinear_init_interpolates():
  # A constant map stays constant away from the borders; a ramp stays a ramp.
  module = layers.ConvTranspose(1, 4, 2, kernel_init=layers.bilinear_upsampling_init)
  ones = jnp.ones((1, 6, 6, 1))
  variables = module.init(jax.random.key(0), ones)
  out = np.asarray(module.apply(variables, ones))[0, 2:-2, 2:-2, 0]
  np.testing.assert_allclose(out, 1.0, rtol=1e-6)
  ramp = jnp.arange(6.0)[None, :, None, None] * jnp.ones((1, 6, 6, 1))
  col = np.asarray(module.apply(variables, ramp))[0, 2:-2, 5, 0]
  np.testing.assert_allclose(np.diff(col), 0.5, rtol=1e-6)


def test_bilinear_init_is_per_channel():
  kernel = np.asarray(layers.bilinear_upsampling_init(None, (4, 4, 3, 3)))
  np.testing.assert_allclose(kernel[:, :, 0, 1], 0.0)
  expected = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
  np.testing.assert_allclose(kernel[:, :, 2, 2], expected)


def test_max_pool_and_unpool_on_a_hand_built_array_with_ties_and_odd_size():
  x = jnp.array([[1.0, 3.0, 2.0], [4.0, 4.0, 0.0], [5.0, 1.0, 7.0]])[None, :, :, None]
  pooled, indices = layers.max_pool_2x2_with_argmax(x)
  np.testing.assert_array_equal(pooled[0, :, :, 0], [[4.0, 2.0], [5.0, 7.0]])
  # The tie between the two 4s goes to the first in row-major order: (1, 0).
  np.testing.assert_array_equal(indices[0, :, :, 0], [[2, 0], [0, 0]])
  unpooled = layers.max_unpool_2x2(pooled, indices, (3, 3))
  np.testing.assert_array_equal(
    unpooled[0, :, :, 0], [[0.0, 0.0, 2.0], [4.0, 0.0, 0.0], [5.0, 0.0, 7.0]]
  )


def _unpool_reference(x):
  """Pool and unpool by loops: the first maximum of each window survives."""
  n, h, w, c = x.shape
  out = np.zeros_like(x)
  for b, ch in itertools.product(range(n), range(c)):
    for i in range(0, h, 2):
      for j in range(0, w, 2):
        window = x[b, i : i + 2, j : j + 2, ch]
        di, dj = np.unravel_index(np.argmax(window), window.shape)
        out[b, i + di, j + dj, ch] = window[di, dj]
  return out


@pytest.mark.parametrize("size", [(4, 6), (5, 7), (7, 7), (1, 3)])
def test_unpool_puts_every_value_where_its_max_came_from(size):
  x = np.random.default_rng(5).integers(0, 3, size=(2, *size, 3)).astype(np.float32)  # Many ties.
  pooled, indices = layers.max_pool_2x2_with_argmax(jnp.asarray(x))
  np.testing.assert_array_equal(pooled.shape, (2, -(-size[0] // 2), -(-size[1] // 2), 3))
  got = np.asarray(layers.max_unpool_2x2(pooled, indices, size))
  np.testing.assert_array_equal(got, _unpool_reference(x))


def test_unpool_gradient_reaches_the_max_positions_only():
  x = jnp.asarray(np.random.default_rng(6).normal(size=(1, 4, 4, 1)), jnp.float32)

  def f(x):
    pooled, indices = layers.max_pool_2x2_with_argmax(x)
    return jnp.sum(layers.max_unpool_2x2(pooled, indices, (4, 4)))

  grad = np.asarray(jax.grad(f)(x))
  np.testing.assert_array_equal(grad != 0, _unpool_reference(np.asarray(x)) != 0)


def test_separable_conv_parameters():
  module = layers.SeparableConvNormAct(8)
  variables = jax.eval_shape(
    lambda: module.init(jax.random.key(0), jnp.zeros((1, 5, 5, 4)), train=False)
  )
  params = variables["params"]
  assert params["depthwise"]["kernel"].shape == (3, 3, 1, 4)
  assert params["pointwise"]["kernel"].shape == (1, 1, 4, 8)


def test_rate_beyond_the_map_is_its_centre_tap_exactly(tf):
  # ASPP's rate 36 on a 32×32 map: every other tap reads padding.
  x = np.random.default_rng(3).normal(size=(2, 5, 7, 4)).astype(np.float32)
  conv = layers.Conv(3, 3, dilation=8)
  variables, ours = _apply(conv, x)
  kernel = np.asarray(variables["params"]["kernel"])
  assert kernel.shape == (3, 3, 4, 3)  # The parameter keeps its shape.
  theirs = tf.nn.atrous_conv2d(x, kernel, rate=8, padding="SAME").numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
  grad = jax.grad(lambda v: jnp.sum(conv.apply(v, x) ** 2))(variables)["params"]["kernel"]
  assert np.all(np.asarray(grad)[1, 1] != 0) and np.all(np.asarray(grad)[0] == 0)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (3, 13, 11, 5)])
def test_max_pools_and_their_gradients_equal_flax(shape):
  # Values on a coarse grid, so windows hold ties: the gradient goes to the
  # first maximum, as XLA's select-and-scatter sends it.
  x = jnp.round(jax.random.normal(jax.random.key(0), shape) * 2) / 2
  probe = lambda y: jnp.sin(jnp.arange(y.size, dtype=jnp.float32).reshape(y.shape))
  pairs = [
    (
      layers.max_pool_2x2,
      lambda x: nn.max_pool(x, (2, 2), (2, 2), padding=((0, x.shape[1] % 2), (0, x.shape[2] % 2))),
    ),
    (layers.max_pool_3x3_s2, lambda x: nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))),
  ]
  for ours, flax_pool in pairs:
    np.testing.assert_array_equal(jax.jit(ours)(x), flax_pool(x))
    grad = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(f(x) * probe(f(x)))))(x)
    # Overlapping 3×3 windows add in another order: float rounding only.
    np.testing.assert_allclose(grad(ours), grad(flax_pool), rtol=1e-6, atol=1e-7)


def test_bfloat16_concatenation_and_its_gradient():
  a = jax.random.normal(jax.random.key(0), (2, 5, 4, 3)).astype(jnp.bfloat16)
  b = jax.random.normal(jax.random.key(1), (2, 5, 4, 6)).astype(jnp.bfloat16)
  np.testing.assert_array_equal(layers.concat_channels([a, b]), jnp.concatenate([a, b], -1))
  probe = jax.random.normal(jax.random.key(2), (2, 5, 4, 9))
  loss = lambda f: lambda a, b: jnp.sum(f([a, b]).astype(jnp.float32) * probe)
  ours = jax.grad(loss(layers.concat_channels), (0, 1))(a, b)
  plain = jax.grad(loss(lambda xs: jnp.concatenate(xs, -1)), (0, 1))(a, b)
  for x, y in zip(ours, plain, strict=True):
    assert x.dtype == jnp.bfloat16
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_equals_flax(train):
  x = jax.random.normal(jax.random.key(0), (4, 9, 7, 5)) * 3 + 1
  ours = layers.BatchNorm(use_running_average=not train)
  theirs = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
  variables = theirs.init(jax.random.key(0), x)
  assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(variables)
  variables = jax.tree.map(lambda v: v + 0.3, variables)  # Not the initial values.
  probe = jnp.sin(x)

  def run(module):
    def loss(params, x):
      y, stats = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return jnp.sum(y * probe), (y, stats)

    return jax.jit(jax.grad(loss, (0, 1), has_aux=True))(variables["params"], x)

  for a, b in zip(jax.tree.leaves(run(ours)), jax.tree.leaves(run(theirs)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _interpolation_matrix(size: int, n: int) -> np.ndarray:
  """`[size, n]`: PyTorch's bilinear `align_corners=False` rule as a matrix."""
  matrix = np.zeros((size, n))
  for i in range(size):
    source = max((i + 0.5) * n / size - 0.5, 0.0)
    low = min(int(np.floor(source)), n - 1)
    high = min(low + 1, n - 1)
    matrix[i, low] += 1 - (source - low)
    matrix[i, high] += source - low
  return matrix


@pytest.mark.parametrize(
  "shape,size",
  [((8, 8), (64, 64)), ((5, 7), (20, 14)), ((1, 3), (4, 9)), ((1, 1), (3, 5)), ((9, 6), (4, 18))],
)
def test_resize_bilinear_and_its_gradient_equal_the_interpolation_matrices(shape, size):
  # Whole factors take their own gradient (no scatter-add); the rest the gathers'.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, *shape, 3)).astype(np.float32)
  cotangent = rng.normal(size=(2, *size, 3)).astype(np.float32)
  rows, cols = _interpolation_matrix(size[0], shape[0]), _interpolation_matrix(size[1], shape[1])
  out, vjp = jax.vjp(lambda v: layers.resize_bilinear(v, size), jnp.asarray(x))
  np.testing.assert_allclose(out, np.einsum("ih,nhwc,jw->nijc", rows, x, cols), atol=1e-5)
  (grad,) = vjp(jnp.asarray(cotangent))
  want = np.einsum("ih,nijc,jw->nhwc", rows, cotangent, cols)
  np.testing.assert_allclose(grad, want, atol=1e-5)


@pytest.mark.parametrize(
  "fn",
  [
    lambda x: layers.adaptive_avg_pool(x, 3),
    lambda x: layers.adaptive_avg_pool(x, 6),
    lambda x: layers.resize_bilinear(x, (2 * x.shape[1], 4 * x.shape[2])),
    lambda x: layers.resize_bilinear(x, (x.shape[1] + 5, 2 * x.shape[2] - 1)),
    lambda x: layers.resize_bilinear(layers.adaptive_avg_pool(x, 3), x.shape[1:3]),
    lambda x: layers.subsample(x, 2, (1, 0)),
    lambda x: layers.crop(x, (x.shape[1] - 3, x.shape[2] - 1), (2, 1)),
    lambda x: layers.max_pool_2x2_with_argmax(x)[1].astype(jnp.float32),
    lambda x: layers.max_unpool_2x2(*layers.max_pool_2x2_with_argmax(x), x.shape[1:3]),
    layers.max_pool_3x3_s2,
  ],
)
def test_symbolic_sizes_compute_what_concrete_ones_do(fn):
  """Exports of any size trace these with symbolic height and width (the
  pyramid pooling, resizes and strided taps of PSPNet, DeepLab, SegFormer):
  the exported function equals the concrete one on odd sizes."""
  h, w = jax.export.symbolic_shape("h, w", constraints=("h >= 4", "w >= 4"))
  exported = jax.export.export(jax.jit(fn))(jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32))
  for size in [(7, 9), (13, 6), (32, 17)]:
    x = jax.random.normal(jax.random.key(size[0]), (2, *size, 3))
    np.testing.assert_allclose(exported.call(x), jax.jit(fn)(x), rtol=1e-5, atol=1e-5)
  x = np.arange(2 * 7 * 9 * 3, dtype=np.float32).reshape(2, 7, 9, 3)
  np.testing.assert_array_equal(layers.subsample(x, 3, (1, 2)), x[:, 1::3, 2::3])
