"""Config files: `configs/<name>.py[:arg]` -> a locked ConfigDict, and run names.

Command lines load them through `jaxseg.cli` (which applies `--config.KEY=VALUE`
overrides); notebooks and tests call `load_config` directly.
"""

import importlib.util
import os
import sys

import ml_collections


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`configs/psp.py:resnet50` -> that file's `get_config("resnet50")`, locked."""
  path, _, arg = spec.partition(":")
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.insert(0, root)  # Config files import their siblings as `configs.*`.
  module_spec = importlib.util.spec_from_file_location("jaxseg_config_file", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  config.lock()
  return config


def default_workdir(spec: str) -> str:
  """`configs/psp.py:resnet50` -> `runs/psp_resnet50`."""
  path, _, arg = spec.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", f"{name}_{arg}" if arg else name)
