"""A finished run: its config, checkpoint choice and variables for inference."""

import json
import os

import jax
import numpy as np
import pytest

from jaxseg.training import runs


def test_checkpoint_choice_names_what_exists(trained_run):
  workdir, _ = trained_run
  config = runs.load_run_config(workdir)
  assert runs.resolve_step(config, workdir, "latest") == 4
  with pytest.raises(ValueError, match=r"checkpoint '7': saved steps are \[2, 4\]"):
    runs.resolve_step(config, workdir, "7")

  assert runs.resolve_step(config, workdir, "best") in (2, 4)


def test_inference_reads_parameters_and_statistics_only(trained_run):
  workdir, _ = trained_run
  config = runs.load_run_config(workdir)
  model, variables = runs.load_variables(config, workdir, 4)
  assert set(variables) == {"params", "batch_stats"}  # No optimizer state.
  _, state = runs.load_train_state(config, workdir, 4)
  for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert type(model).__name__ == "PSPNet"


def test_variables_that_do_not_fit_the_config_are_named(trained_run):
  workdir, _ = trained_run
  config = runs.load_run_config(workdir)
  config.model.aux_channels = 4
  with pytest.raises(ValueError, match=r"shapes differ .*params/aux_head/conv/conv/kernel"):
    runs.load_variables(config, workdir, 4)


def test_a_workdir_without_a_run_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="must be a jaxseg training run"):
    runs.load_run_config(str(tmp_path))


def test_configs_of_earlier_versions_are_upgraded(tmp_path):
  # FCN named its VGG16-BN trunk with `batch_norm` before the backbone registry.
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"model": {"name": "fcn8s", "batch_norm": True, "width_divisor": 8}}, f)
  config = runs.load_run_config(str(tmp_path))
  assert config.model.backbone == "vgg16_bn" and "batch_norm" not in config.model
  assert os.path.exists(tmp_path / "config.json")
