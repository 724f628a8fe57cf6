import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import losses


def _logits_and_labels():
  # One row of three pixels, two classes; the third pixel is ignored and its
  # (huge) logits must not matter.
  logits = jnp.array([[[[2.0, 0.0], [0.0, 0.0], [1e4, -1e4]]]])
  labels = jnp.array([[[0, 1, 255]]])
  return logits, labels


def test_cross_entropy_averages_over_labelled_pixels_only():
  logits, labels = _logits_and_labels()
  loss = jax.jit(losses.cross_entropy, static_argnums=2)(logits, labels, 255)
  expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_of_fully_ignored_batch_is_zero():
  logits, _ = _logits_and_labels()
  assert float(losses.cross_entropy(logits, jnp.full((1, 1, 3), 255), 255)) == 0.0


def test_segmentation_loss_adds_weighted_auxiliary_loss():
  logits, labels = _logits_and_labels()
  aux = jnp.zeros_like(logits)  # Uniform: log(2) per labelled pixel.
  fn = jax.jit(lambda o, lb: losses.segmentation_loss(o, lb, ignore_label=255, aux_weight=0.4))
  total, parts = fn({"logits": logits, "aux_logits": aux}, labels)
  main = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
  assert float(parts["loss_main"]) == pytest.approx(main, rel=1e-6)
  assert float(parts["loss_aux"]) == pytest.approx(math.log(2.0), rel=1e-6)
  assert float(total) == pytest.approx(main + 0.4 * math.log(2.0), rel=1e-6)


def test_several_auxiliary_heads_each_weigh_aux_weight():
  logits, labels = _logits_and_labels()
  uniform = jnp.zeros_like(logits)  # log(2) per labelled pixel.
  fn = jax.jit(lambda o, lb: losses.segmentation_loss(o, lb, ignore_label=255, aux_weight=0.4))
  total, parts = fn({"logits": logits, "aux_logits": (uniform, logits)}, labels)
  main = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
  assert float(parts["loss_aux"]) == pytest.approx(math.log(2.0) + main, rel=1e-6)
  assert float(total) == pytest.approx(main + 0.4 * (math.log(2.0) + main), rel=1e-6)


def test_ignore_label_gets_no_gradient():
  logits, labels = _logits_and_labels()
  grad = jax.grad(losses.cross_entropy)(logits, labels, 255)
  np.testing.assert_array_equal(grad[0, 0, 2], 0.0)
  assert np.all(np.abs(grad[0, 0, :2]) > 0)


def test_class_weights_weight_pixels_and_normalise_by_their_sum():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 3, 3)), jnp.float32)
  labels = jnp.asarray([[[0, 1, 2], [2, 255, 1]]])
  weights = (0.5, 2.0, 1.0)
  got = jax.jit(lambda x, y: losses.cross_entropy(x, y, 255, weights))(logits, labels)
  logp = jax.nn.log_softmax(logits, -1)
  num = den = 0.0
  for (i, j), y in np.ndenumerate(np.asarray(labels[0])):
    if y != 255:
      num += -weights[y] * float(logp[0, i, j, y])
      den += weights[y]
  np.testing.assert_allclose(float(got), num / den, rtol=1e-5)
