"""A training run after the fact: its config, its checkpoints, its model restored."""

import json
import os

import ml_collections
from flax import linen as nn

from jaxseg import checkpoint, inference, sharding
from jaxseg import state as train_state
from jaxseg.data import get_dataset_spec


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: --workdir must be a jaxseg training run")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def resolve_step(config: ml_collections.ConfigDict, workdir: str, which: str) -> int:
  """'best' / 'latest' / a number -> a saved step; raises naming what exists."""
  ckpt = train_state.checkpointer(config, workdir)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {ckpt.directory}")
    if which == "latest":
      return max(steps)
    if which == "best":
      best = ckpt.best_step()
      return best if best is not None else max(steps)
    if not which.isdigit() or int(which) not in steps:
      raise ValueError(f"checkpoint {which!r}: saved steps are {sorted(steps)}")
    return int(which)
  finally:
    ckpt.close()


def load_train_state(
  config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> tuple[nn.Module, train_state.TrainState]:
  """The model and the state saved at `step` (default: latest) in `workdir`."""
  mesh = sharding.make_mesh(config)
  spec = get_dataset_spec(config.data)
  model, _, _, abstract_state, state_sharding = train_state.build(config, spec.num_classes, mesh)
  ckpt = train_state.checkpointer(config, workdir)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {ckpt.directory}")
    target = checkpoint.abstract_with_shardings(abstract_state, state_sharding)
    return model, ckpt.restore(step, target)
  finally:
    ckpt.close()


def load_predictor(workdir: str, which: str = "best"):
  """`(config, step, predict_fn)` for the run in `workdir` at checkpoint `which`."""
  config = load_run_config(workdir)
  step = resolve_step(config, workdir, which)
  model, state = load_train_state(config, workdir, step)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return config, step, inference.make_predict_fn(model, variables)
