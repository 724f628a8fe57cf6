"""The train state: built abstractly and sharded, and the values a fresh run
starts from (`config.init_from`; backbone files are in test_pretrained.py)."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxseg.parallel import sharding
from jaxseg.training import loop, state
from tests.helpers import one_step_at_learning_rate_zero, saved_params, tiny_config


def test_build_materialises_the_abstract_state_in_its_shardings(data_dir):
  config = tiny_config(data_dir)
  mesh = sharding.make_mesh(config)
  setup = state.build(config, 5, mesh)
  fresh = setup.init_state()
  for leaf, abstract, leaf_sharding in zip(
    jax.tree.leaves(fresh),
    jax.tree.leaves(setup.abstract_state),
    jax.tree.leaves(setup.state_sharding),
    strict=True,
  ):
    assert leaf.shape == abstract.shape and leaf.dtype == abstract.dtype
    assert leaf.sharding == leaf_sharding
  assert int(fresh.step) == 0


def test_a_run_from_scratch_has_no_initial_values(data_dir):
  config = tiny_config(data_dir)
  setup = state.build(config, 5, sharding.make_mesh(config))
  assert state.initial_values(config, setup.model, setup.abstract_state) == ({}, "")


@pytest.mark.slow
def test_init_from_another_run_reinitialises_only_what_changed_shape(data_dir, tmp_path, capsys):
  first = str(tmp_path / "first")
  loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=2, eval_every_steps=2), first)
  # A different auxiliary head: its arrays change shape and start fresh.
  config = one_step_at_learning_rate_zero(data_dir, init_from=first, **{"model.aux_channels": 4})
  second = str(tmp_path / "second")
  loop.train_and_evaluate(config, second)
  out = capsys.readouterr().out
  assert f"Initialised from {first}/checkpoints/2" in out
  before, after = saved_params(first), saved_params(second)
  changed = {k for k in before if before[k].shape != after[k].shape}
  assert changed and all(k.startswith("aux_head/") for k in changed)
  for key in changed:
    assert f"params/{key} {before[key].shape}->{after[key].shape}" in out
  for key in before.keys() - changed:
    np.testing.assert_array_equal(after[key], before[key])


@pytest.mark.slow
def test_init_from_a_different_architecture_raises_naming_the_keys(data_dir, tmp_path):
  first = str(tmp_path / "first")
  loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=2, eval_every_steps=2), first)
  config = tiny_config(data_dir, init_from=first, **{"model.aux_channels": 0})
  with pytest.raises(
    ValueError, match=r"not in the model \(7\): batch_stats/aux_head/conv/bn/mean"
  ):
    loop.train_and_evaluate(config, str(tmp_path / "second"))
  with pytest.raises(FileNotFoundError, match="neither a jaxseg workdir"):
    loop.train_and_evaluate(tiny_config(data_dir, init_from=str(tmp_path)), str(tmp_path / "x"))


def _tiny_fcn(data_dir, name, **overrides):
  config = one_step_at_learning_rate_zero(data_dir, **overrides)
  config.model = ml_collections.ConfigDict(
    {"name": name, "backbone": "vgg16_bn", "width_divisor": 16, "fc_features": 16}
  )
  return config


@pytest.mark.slow
def test_staged_fcn_training_starts_16s_from_a_trained_32s(data_dir, tmp_path, capsys):
  # The FCN paper's staged recipe: the finer net takes every array of the
  # coarser one; its new skip starts at zero (so it starts as the coarser net).
  first = str(tmp_path / "fcn32s")
  loop.train_and_evaluate(_tiny_fcn(data_dir, "fcn32s"), first)
  with pytest.raises(ValueError, match=r"missing from it \(2\): params/score_pool4/bias"):
    loop.train_and_evaluate(_tiny_fcn(data_dir, "fcn16s", init_from=first), str(tmp_path / "x"))
  second = str(tmp_path / "fcn16s")
  config = _tiny_fcn(data_dir, "fcn16s", init_from=first, init_from_new_layers=True)
  loop.train_and_evaluate(config, second)
  out = capsys.readouterr().out
  new = "params/score_pool4/bias, params/score_pool4/kernel"
  assert f"new, not in the checkpoint, initialised: {new}" in out
  before, after = saved_params(first), saved_params(second)
  assert set(after) - set(before) == {"score_pool4/bias", "score_pool4/kernel"}
  for key in before:
    np.testing.assert_array_equal(after[key], before[key])
  assert not np.any(after["score_pool4/kernel"]) and not np.any(after["score_pool4/bias"])
