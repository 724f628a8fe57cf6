"""The optimizers and schedule a config can choose, checked against their rules by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxseg.training import optim


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
  tx = optim.create(config).tx
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
    optim.create(_config(optimizer="adam"))


def test_a_run_saved_before_the_option_keeps_sgd():
  config = _config()
  del config["optimizer"]
  updates = _first_update(config, PARAMS, GRADS)
  np.testing.assert_allclose(updates["w"], -0.5 * (GRADS["w"] + 0.1 * PARAMS["w"]), rtol=1e-6)


def test_schedule_warms_up_linearly_then_decays_polynomially():
  config = _config(
    warmup_steps=10, learning_rate=0.1, end_learning_rate=0.0, lr_power=1.0, num_train_steps=110
  )
  schedule = optim.create(config).schedule
  rates = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
  # 0 -> 0.1 over 10 steps, then linear (power 1) decay to 0 over the other 100.
  np.testing.assert_allclose(rates, [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-7)


def test_the_optimizer_follows_its_schedule():
  config = _config(optimizer="sgd", momentum=0.0, weight_decay=0.0)
  config.warmup_steps, config.end_learning_rate, config.num_train_steps = 0, 0.0, 4
  optimizer = optim.create(config)
  params, grads = {"w": jnp.ones(1)}, {"w": jnp.ones(1)}
  opt_state = optimizer.tx.init(params)
  for step in range(3):
    updates, opt_state = optimizer.tx.update(grads, opt_state, params)
    np.testing.assert_allclose(updates["w"], -optimizer.schedule(step), rtol=1e-6)
