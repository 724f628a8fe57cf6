"""The CPU-fast bfloat16 formulations compute what the plain operations compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import fast_ops, layers, onednn


@pytest.fixture(autouse=True)
def _xla_backend():
  """These formulations are the CPU path where the oneDNN library is absent."""
  with onednn.backend("xla"):
    yield


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("channels,dilation", [(128, 1), (160, 2), (128, 4)])
def test_bf16_conv_and_its_gradients_equal_the_float32_convolution(channels, dilation):
  x = jax.random.normal(jax.random.key(0), (2, 12, 10, channels))
  w = jax.random.normal(jax.random.key(1), (3, 3, channels, 24)) * 0.05
  probe = jax.random.normal(jax.random.key(2), (2, 12, 10, 24))
  plain = lambda x, w: jnp.sum(fast_ops._xla_conv(x, w, dilation) * probe)
  bf16 = lambda x, w: jnp.sum(
    fast_ops.bf16_conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), dilation).astype(jnp.float32)
    * probe
  )
  out = fast_ops.bf16_conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), dilation)
  assert out.dtype == jnp.bfloat16 and out.shape == (2, 12, 10, 24)
  assert _rel(out, fast_ops._xla_conv(x, w, dilation)) < 1e-2  # bfloat16 rounding only.
  for ours, theirs in zip(
    jax.jit(jax.grad(bf16, (0, 1)))(x, w), jax.grad(plain, (0, 1))(x, w), strict=True
  ):
    assert _rel(ours, theirs) < 1e-2


def test_bf16_matmul_and_its_gradients_equal_float32():
  x = jax.random.normal(jax.random.key(0), (3, 5, 7, 64))
  w = jax.random.normal(jax.random.key(1), (64, 32))
  f = lambda x, w: jnp.sum(fast_ops.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)) ** 2)
  g = lambda x, w: jnp.sum(jnp.einsum("nhwc,cd->nhwd", x, w) ** 2)
  for ours, theirs in zip(jax.grad(f, (0, 1))(x, w), jax.grad(g, (0, 1))(x, w), strict=True):
    assert _rel(ours, theirs) < 2e-2
  f32 = fast_ops.matmul(x, w)
  np.testing.assert_allclose(f32, jnp.einsum("nhwc,cd->nhwd", x, w), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("in_channels,features,fast", [(128, 256, True), (128, 16, False)])
def test_bfloat16_conv_layer_takes_the_fast_path_where_it_wins_and_matches_float32(
  in_channels, features, fast
):
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, in_channels))
  conv = layers.Conv(features, 3, dilation=2, dtype=jnp.bfloat16)
  variables = conv.init(jax.random.key(1), x)
  jaxpr = str(jax.make_jaxpr(lambda x: conv.apply(variables, x))(x))
  assert ("conv_general_dilated" not in jaxpr) == fast
  assert ("preferred_element_type=float32" in jaxpr) == fast
  plain = layers.Conv(features, 3, dilation=2).apply(variables, x)
  assert _rel(conv.apply(variables, x), plain) < 1e-2


def test_bfloat16_up_convolution_is_a_bf16_dot_and_matches_float32():
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 16))
  up = layers.ConvTranspose(8, 2, 2, use_bias=True, dtype=jnp.bfloat16)
  variables = up.init(jax.random.key(1), x)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias
  jaxpr = str(jax.make_jaxpr(lambda x: up.apply(variables, x))(x))
  assert "preferred_element_type=float32" in jaxpr
  ours = up.apply(variables, x)
  assert ours.dtype == jnp.bfloat16 and ours.shape == (2, 10, 12, 8)
  assert _rel(ours, layers.ConvTranspose(8, 2, 2, use_bias=True).apply(variables, x)) < 1e-2
