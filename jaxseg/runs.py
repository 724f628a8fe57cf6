"""A finished training run as a predictor: its config, a chosen checkpoint, the model."""

import json
import os

import ml_collections

from jaxseg import checkpoint, inference, train


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: --workdir must be a jaxseg training run")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def resolve_step(config: ml_collections.ConfigDict, workdir: str, which: str) -> int:
  """'best' / 'latest' / a number -> a saved step; raises naming what exists."""
  ckpt = checkpoint.Checkpointer(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    keep=config.keep_checkpoints,
    save_every_steps=config.checkpoint_every_steps,
  )
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


def load_predictor(workdir: str, which: str = "best"):
  """`(config, step, predict_fn)` for the run in `workdir` at checkpoint `which`."""
  config = load_run_config(workdir)
  step = resolve_step(config, workdir, which)
  model, state = train.load_train_state(config, workdir, step)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return config, step, inference.make_predict_fn(model, variables)
