"""Every config file loads, and every name in it resolves."""

import glob
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxseg import main
from jaxseg.data import get_dataset_spec
from jaxseg.models import create_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
# Arguments each config documents; every one must load.
CONFIG_ARGS = {"psp.py": ["", "resnet50", "resnet101"]}


def _load(path: str, arg: str):
  spec = importlib.util.spec_from_file_location("config_under_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


@pytest.mark.parametrize(
  "path,arg",
  [(p, a) for p in CONFIG_FILES for a in CONFIG_ARGS.get(os.path.basename(p), [""])],
)
def test_config_loads_and_names_resolve(path, arg):
  config = _load(path, arg)
  spec = get_dataset_spec(config.data.name)
  model = create_model(config, spec.num_classes)
  # Shapes only: no compilation of full-size models.
  x = jax.ShapeDtypeStruct((1, *config.crop_size, 3), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=True))
  assert variables["params"]
  assert config.batch_size > 0 and config.num_train_steps > 0


def test_unknown_config_key_fails_before_any_work(tmp_path):
  cmd = [
    sys.executable,
    "-m",
    "jaxseg.main",
    "--config=configs/psp.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.does_not_exist=1",
  ]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "does_not_exist" in proc.stderr
  assert not (tmp_path / "run").exists()


def test_unknown_model_attribute_is_named():
  config = _load(os.path.join(ROOT, "configs", "psp.py"), "")
  with config.unlocked():
    config.model.not_a_field = 3
  with pytest.raises(ValueError, match=r"config\.model\.not_a_field"):
    create_model(config, 5)


def test_unknown_dataset_is_named():
  with pytest.raises(ValueError, match=r"config\.data\.name='nope'"):
    get_dataset_spec("nope")


def test_default_workdir_is_named_after_the_config():
  assert main.default_workdir("configs/psp.py") == os.path.join("runs", "psp")
  assert main.default_workdir("configs/psp.py:resnet50") == os.path.join("runs", "psp_resnet50")
