"""Helpers shared by tests: tiny configs, the losses a run logged, weight files."""

import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

from configs import default
from jaxseg import checkpoint, metrics, pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir: str, **overrides):
  """The default experiment shrunk to seconds: tiny data, tiny PSPNet;
  `overrides` by dotted key (`**{"model.aux_channels": 4}`)."""
  config = default.get_config()
  config.data.variant = "tiny"
  config.data.data_dir = data_dir
  config.model.backbone_width = 8
  config.model.head_channels = 16
  config.model.aux_channels = 8
  config.crop_size = (64, 64)
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 4
  config.warmup_steps = 1
  config.log_every_steps = 1
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 2
  config.update_from_flattened_dict(overrides)
  return config


def logged_losses(workdir: str) -> dict[int, float]:
  """Per-step training loss a run logged (the latest record of a step logged twice)."""
  return {r["step"]: r["train/loss"] for r in metrics.read_scalars(workdir) if "train/loss" in r}


def saved_params(workdir: str) -> dict:
  return pretrained.flatten_dict(checkpoint.read_variables(workdir)[0]["params"])


def one_step_at_learning_rate_zero(data_dir: str, **overrides):
  """A tiny run whose saved parameters are its initial ones."""
  return tiny_config(
    data_dir,
    num_train_steps=1,
    learning_rate=0.0,
    end_learning_rate=0.0,
    eval_every_steps=1,
    checkpoint_every_steps=1,
    **overrides,
  )


def torchvision_resnet_state(stage_sizes, bottleneck: bool, width: int, seed: int = 0) -> dict:
  """A random state dict with torchvision's ResNet names and shapes (`width`
  channels in the first stage instead of 64), ImageNet classifier included."""
  rng = np.random.default_rng(seed)
  state = {}

  def conv(name, cout, cin, k):
    state[f"{name}.weight"] = rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k))

  def bn(name, c):
    state[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
    state[f"{name}.bias"] = rng.uniform(-0.5, 0.5, c)
    state[f"{name}.running_mean"] = rng.uniform(-0.5, 0.5, c)
    state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c)
    state[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1", width, 3, 7)
  bn("bn1", width)
  cin, expansion = width, 4 if bottleneck else 1
  for i, blocks in enumerate(stage_sizes):
    planes = width * 2**i
    for j in range(blocks):
      p = f"layer{i + 1}.{j}"
      if bottleneck:
        shapes = [(planes, cin, 1), (planes, planes, 3), (planes * 4, planes, 1)]
      else:
        shapes = [(planes, cin, 3), (planes, planes, 3)]
      for n, (co, ci, k) in enumerate(shapes, 1):
        conv(f"{p}.conv{n}", co, ci, k)
        bn(f"{p}.bn{n}", co)
      if j == 0 and (i > 0 or cin != planes * expansion):
        conv(f"{p}.downsample.0", planes * expansion, cin, 1)
        bn(f"{p}.downsample.1", planes * expansion)
      cin = planes * expansion
  state["fc.weight"] = rng.normal(size=(10, cin))
  state["fc.bias"] = np.zeros(10)
  return {k: v if v.dtype == np.int64 else v.astype(np.float32) for k, v in state.items()}


def save_safetensors(state: dict, path) -> str:
  save_file(state, str(path))
  return str(path)


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m module args...` from the repository root, output captured."""
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
  )  # fmt: skip
