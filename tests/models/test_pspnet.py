import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import layers, pspnet


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("size", [(64, 64), (72, 50)])
def test_tiny_pspnet_shapes_and_parameter_count(size):
  model = pspnet._tiny(num_classes=5)
  x = jnp.zeros((2, *size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=True))
  # ResNet-18 at width w has 2724 w^2 + 297 w parameters (11,176,512 at w=64).
  trunk = 2724 * 8**2 + 297 * 8
  ppm = 4 * (64 * 16 + 2 * 16)  # 4 branches: 1x1 conv 64->16, BN.
  bottleneck = 9 * (64 + 4 * 16) * 16 + 2 * 16  # 3x3 conv 128->16, BN.
  classifier = 16 * 5 + 5
  aux = 9 * 32 * 8 + 2 * 8 + 8 * 5 + 5  # 3x3 conv on stage 3 (32 ch) -> 8, BN, classifier.
  assert _count(variables["params"]) == trunk + ppm + bottleneck + classifier + aux
  assert _count(variables["params"]["backbone"]) == trunk

  train_out = jax.eval_shape(
    lambda v: model.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
    )[0],
    variables,
  )
  assert train_out["logits"].shape == (2, *size, 5)
  assert train_out["aux_logits"].shape == (2, *size, 5)
  eval_out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert set(eval_out) == {"logits"} and eval_out["logits"].dtype == jnp.float32


def test_paper_pspnet_resnet50_parameter_count():
  model = pspnet.PSPNet(num_classes=21, backbone="resnet50")
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=True)
  )
  trunk = 23_508_032
  ppm = 4 * (2048 * 512 + 2 * 512)
  bottleneck = 9 * 4096 * 512 + 2 * 512
  classifier = 512 * 21 + 21
  aux = 9 * 1024 * 256 + 2 * 256 + 256 * 21 + 21
  assert _count(variables["params"]) == trunk + ppm + bottleneck + classifier + aux == 48_957_802


@pytest.mark.parametrize("h,w,bins", [(8, 8, 3), (7, 10, 6), (5, 5, 2), (16, 12, 1)])
def test_adaptive_avg_pool_matches_pytorch_definition(h, w, bins):
  x = np.random.default_rng(0).normal(size=(2, h, w, 3)).astype(np.float32)
  expected = np.zeros((2, bins, bins, 3), np.float32)
  for i in range(bins):
    for j in range(bins):
      y0, y1 = (i * h) // bins, -(-(i + 1) * h // bins)
      x0, x1 = (j * w) // bins, -(-(j + 1) * w // bins)
      expected[:, i, j] = x[:, y0:y1, x0:x1].mean(axis=(1, 2))
  np.testing.assert_allclose(layers.adaptive_avg_pool(jnp.asarray(x), bins), expected, rtol=1e-5)


def test_tiny_pspnet_runs_in_bfloat16_with_float32_params():
  model = pspnet._tiny(num_classes=3, dtype=jnp.bfloat16)
  x = jnp.ones((1, 48, 48, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  out = model.apply(variables, x, train=False)
  assert out["logits"].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out["logits"])))
