"""The optimizers a config can choose, checked against their update rules by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxseg import state


def _config(**overrides):
  config = default.get_config()
  config.warmup_steps = 0
  config.learning_rate = 0.5
  config.end_learning_rate = 0.5  # A constant rate: the first update is easy to write down.
  config.weight_decay = 0.1
  for key, value in overrides.items():
    config[key] = value
  return config


def _first_update(config, params, grads):
  tx = state.create_optimizer(config)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


PARAMS = {"w": jnp.array([1.0, -2.0, 0.5])}
GRADS = {"w": jnp.array([0.2, 0.0, -4.0])}


def test_sgd_adds_weight_decay_to_the_gradient():
  updates = _first_update(_config(optimizer="sgd"), PARAMS, GRADS)
  expected = -0.5 * (GRADS["w"] + 0.1 * PARAMS["w"])  # Momentum starts at zero.
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)


def test_adamw_decouples_weight_decay():
  updates = _first_update(_config(optimizer="adamw"), PARAMS, GRADS)
  # First Adam step after bias correction: g / (|g| + eps); decay scaled by the rate.
  g, p = np.asarray(GRADS["w"]), np.asarray(PARAMS["w"])
  expected = -0.5 * (g / (np.abs(g) + 1e-8) + 0.1 * p)
  # float32 bias correction (1 - 0.999) rounds in the sixth digit.
  np.testing.assert_allclose(updates["w"], expected, rtol=2e-5)


def test_unknown_optimizer_is_named():
  with pytest.raises(ValueError, match=r"config\.optimizer='adam' must be one of"):
    state.create_optimizer(_config(optimizer="adam"))


def test_a_run_saved_before_the_option_keeps_sgd():
  config = _config()
  del config["optimizer"]
  updates = _first_update(config, PARAMS, GRADS)
  np.testing.assert_allclose(updates["w"], -0.5 * (GRADS["w"] + 0.1 * PARAMS["w"]), rtol=1e-6)
