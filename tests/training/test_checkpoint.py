"""Orbax checkpoints of the train state: round trip, retention, partial reads."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.parallel import sharding
from jaxseg.training import checkpoint
from tests.helpers import tiny_config


def _tree(value: float) -> dict:
  return {
    "params": {"w": jnp.full((4, 3), value)},
    "batch_stats": {"mean": jnp.full((3,), -value)},
    "opt_state": {"m": jnp.full((4, 3), 2 * value)},
  }


def test_saves_restore_and_keep_the_latest_and_the_best(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=2, save_every_steps=10)
  for step, miou in ((10, 0.9), (20, 0.2), (30, 0.3), (40, 0.1)):
    assert ckpt.save(step, _tree(float(step)), metrics={"miou": miou}, force=True)
  assert not ckpt.save(45, _tree(5.0))  # Off the save interval.
  ckpt.wait_until_finished()
  assert sorted(ckpt.all_steps()) == [10, 30, 40]  # The latest two, and the best.
  assert ckpt.best_step() == 10 and ckpt.latest_step() == 40
  abstract = jax.eval_shape(lambda: _tree(0.0))
  replicated = jax.tree.map(
    lambda _: sharding.replicated(jax.sharding.Mesh(jax.devices(), ("data",))), abstract
  )
  restored = ckpt.restore(30, checkpoint.abstract_with_shardings(abstract, replicated))
  np.testing.assert_array_equal(restored["opt_state"]["m"], np.full((4, 3), 60.0))
  ckpt.close()


def test_variables_are_read_without_the_optimizer_state(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), keep=2, save_every_steps=1)
  ckpt.save(3, _tree(3.0), force=True)
  ckpt.save(7, _tree(7.0), force=True)
  ckpt.wait_until_finished()
  ckpt.close()
  # A workdir, its checkpoints directory (the latest step) or one step.
  for path, step in ((tmp_path, 7), (tmp_path / "checkpoints", 7), (tmp_path / "checkpoints/3", 3)):
    variables, directory = checkpoint.read_variables(str(path))
    assert set(variables) == {"params", "batch_stats"}
    assert isinstance(variables["params"]["w"], np.ndarray)
    np.testing.assert_array_equal(variables["params"]["w"], np.full((4, 3), float(step)))
    assert directory == os.path.join(str(tmp_path), "checkpoints", str(step))
  with pytest.raises(FileNotFoundError, match="neither a jaxseg workdir"):
    checkpoint.read_variables(str(tmp_path / "elsewhere"))


def test_a_run_keeps_its_checkpoints_under_its_workdir(data_dir, tmp_path):
  config = tiny_config(data_dir, keep_checkpoints=1, checkpoint_every_steps=5)
  ckpt = checkpoint.for_run(str(tmp_path), config)
  assert ckpt.directory == os.path.join(str(tmp_path), "checkpoints")
  for step in (5, 10):
    ckpt.save(step, _tree(float(step)))
  assert not ckpt.save(12, _tree(12.0))  # Every 5 steps, as configured.
  ckpt.wait_until_finished()
  assert ckpt.all_steps() == [10]  # keep_checkpoints=1.
  ckpt.close()
