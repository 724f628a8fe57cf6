"""Config files: `path[:arg]` -> a locked config, and run names."""

import os

import pytest

from jaxseg import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_config_file_loads_locked_with_its_argument():
  config = config_files.load_config(os.path.join(ROOT, "configs", "psp.py:resnet50"))
  assert config.model.backbone == "resnet50"
  with pytest.raises(AttributeError):
    config.not_a_field = 1


def test_default_workdir_is_named_after_the_config():
  assert config_files.default_workdir("configs/psp.py") == os.path.join("runs", "psp")
  assert config_files.default_workdir("configs/psp.py:resnet50") == os.path.join(
    "runs", "psp_resnet50"
  )
