"""A training run after the fact: its config, its checkpoints, its model restored.

Inference (`load_predictor`, `load_variables`) reads only the parameters and
BatchNorm statistics of a checkpoint; `load_train_state` restores the whole
train state, optimizer included, as resuming does.
"""

import json
import os

import jax
import ml_collections
from flax import linen as nn
from flax import traverse_util

from jaxseg import errors, inference
from jaxseg.data import get_dataset_spec, preprocessing
from jaxseg.models import create_model, pretrained, published
from jaxseg.parallel import sharding
from jaxseg.training import checkpoint, state


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` trained with (its `config.json`)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise errors.MissingInput(f"{path} is missing: --workdir must be a jaxseg training run")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  _upgrade(config)
  return config


def _upgrade(config: ml_collections.ConfigDict) -> None:
  """Config fields of earlier versions, in today's form (same parameters)."""
  model = config.get("model", {})
  if "batch_norm" in model:  # FCN before the backbone registry.
    model.backbone = "vgg16_bn" if model.batch_norm else "vgg16"
    del model["batch_norm"]


# Fields a resumed run may change: how long it trains and how it logs,
# evaluates, checkpoints and lays itself out on the machine. Anything else
# would make the checkpoints describe another experiment.
RESUMABLE_FIELDS = (
  "num_train_steps",
  "log_every_steps",
  "eval_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "num_pictures",
  "eval_batch_size",
  "init_from",  # Only a fresh run reads these two.
  "init_from_new_layers",
  "conv_backend",
  "skip_nonfinite_steps",
  "data.num_threads",
  "data.prefetch_batches",
  "evaluation.mode",
  "evaluation.batch_pixels",
  "evaluation.crop_size",
  "evaluation.stride",
  "data.data_dir",
  "data.manual_dir",
  "mesh.data",
  "mesh.fsdp",
  "mesh.fsdp_min_size",
)


class ResumeRefusedError(errors.InvalidInput):
  """A run was asked to resume with a config its checkpoints do not describe."""


def _flat_json(config) -> dict:
  """`{"model.backbone": ..., ...}` of a config as its config.json holds it."""
  return traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep=".")


def check_resume(workdir: str, config: ml_collections.ConfigDict, abstract_state) -> dict:
  """Whether `config` may resume the run in `workdir`; touches nothing.

  Returns:
    `{field: (old, new)}` of the `RESUMABLE_FIELDS` that changed (empty for a
    fresh run or an unchanged one).

  Raises:
    ResumeRefusedError naming the fields that differ from the run's
    `config.json` (fields a newer jaxseg added are not compared), or the
    arrays whose shapes differ from the latest checkpoint's.
  """
  steps = checkpoint.saved_steps(workdir)
  if not steps:
    return {}
  advice = (
    f"nothing in {workdir} was changed. Train this config in another --workdir, or start "
    f"from this run's weights there with --config.init_from={workdir}"
  )
  changed = {}
  if os.path.exists(os.path.join(workdir, "config.json")):
    old, new = _flat_json(load_run_config(workdir)), _flat_json(config)
    differ = {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]}
    refused = {k: v for k, v in differ.items() if k not in RESUMABLE_FIELDS}
    if refused:
      listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in refused.items())
      raise ResumeRefusedError(
        f"--workdir={workdir} holds a run (checkpoint step {steps[-1]}) trained with another "
        f"config: {listed}; {advice}"
      )
    changed = {k: v for k, v in differ.items() if k in RESUMABLE_FIELDS}
  stored = _newest_stored_shapes(workdir, steps)
  if stored is None:
    return changed  # No checkpoint reads; restoring says so, naming each.
  wanted = {
    k: tuple(v.shape)
    for k, v in pretrained.flatten_dict(
      {"params": abstract_state.params, "batch_stats": abstract_state.batch_stats}
    ).items()
  }
  mismatched = [
    f"{k} {stored.get(k)} -> {wanted.get(k)}"
    for k in sorted(stored.keys() | wanted.keys(), key=lambda k: (k.startswith("batch"), k))
    if stored.get(k) != wanted.get(k)
  ]
  if mismatched:
    shown = ", ".join(mismatched[:4])
    if len(mismatched) > 4:
      shown += f" and {len(mismatched) - 4} more"
    raise ResumeRefusedError(
      f"--workdir={workdir}: checkpoint step {steps[-1]} does not fit this config's model "
      f"({shown}); {advice}"
    )
  return changed


def _newest_stored_shapes(workdir: str, steps: list[int]) -> dict | None:
  """The variable shapes of the newest of `steps` whose metadata reads."""
  for step in reversed(steps):
    try:
      return checkpoint.stored_variable_shapes(workdir, step)
    except Exception:  # Damaged; restoring names it and sets it aside.
      continue
  return None


def resolve_step(config: ml_collections.ConfigDict, workdir: str, which: str) -> int:
  """'best' / 'latest' / a number -> a saved step; raises naming what exists."""
  ckpt = checkpoint.for_run(workdir, config)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise errors.MissingInput(f"No checkpoint in {ckpt.directory}")
    if which == "latest":
      return max(steps)
    if which == "best":
      best = ckpt.best_step()
      return best if best is not None else max(steps)
    if not which.isdigit() or int(which) not in steps:
      raise errors.InvalidInput(f"checkpoint {which!r}: saved steps are {sorted(steps)}")
    return int(which)
  finally:
    ckpt.close()


def load_variables(
  config: ml_collections.ConfigDict, workdir: str, step: int
) -> tuple[nn.Module, dict]:
  """The model and its `{"params", "batch_stats"}` (numpy) saved at `step`;
  no optimizer state is read. Raises, naming the arrays, if they do not fit
  the model `config` describes."""
  model = create_model(config, get_dataset_spec(config.data).num_classes)
  directory = os.path.join(os.path.abspath(workdir), "checkpoints", str(step))
  variables, _ = checkpoint.read_variables(directory)
  variables.setdefault("batch_stats", {})
  abstract = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0),
      jax.numpy.zeros((1, *config.crop_size, preprocessing.from_config(config).channels)),
      train=False,
    )
  )
  pretrained.check_fits(
    pretrained.flatten_dict(variables), pretrained.flatten_dict(abstract), directory
  )
  return model, variables


def load_readable_variables(
  config: ml_collections.ConfigDict, workdir: str, which: str
) -> tuple[int, nn.Module, dict]:
  """`(step, model, variables)` of checkpoint `which` ('best', 'latest' or a
  number). When 'best' or 'latest' is damaged, a warning names it (it is left
  in place) and the newest other checkpoint that reads is used; a damaged
  numbered step is an error."""
  step = resolve_step(config, workdir, which)
  candidates = [step]
  if not which.isdigit():
    candidates += [s for s in reversed(checkpoint.saved_steps(workdir)) if s != step]
  for n, candidate in enumerate(candidates):
    try:
      return candidate, *load_variables(config, workdir, candidate)
    except checkpoint.DamagedCheckpoint as e:
      if len(candidates) == 1:
        raise
      more = "the newest other one that reads" if n + 1 < len(candidates) else "none left"
      checkpoint.warn(f"{e}; left in place, using {more}")
  raise checkpoint.DamagedCheckpoint(
    f"no checkpoint of {workdir} reads completely (steps {', '.join(map(str, candidates))})"
  )


def load_train_state(
  config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> tuple[nn.Module, state.TrainState]:
  """The model and the whole train state saved at `step` (default: latest)."""
  mesh = sharding.make_mesh(config)
  setup = state.build(config, get_dataset_spec(config.data).num_classes, mesh)
  ckpt = checkpoint.for_run(workdir, config)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise errors.MissingInput(f"No checkpoint in {ckpt.directory}")
    target = checkpoint.abstract_with_shardings(setup.abstract_state, setup.state_sharding)
    return setup.model, ckpt.restore(step, target)
  finally:
    ckpt.close()


def load_model(workdir: str, which: str = "best"):
  """`(config, step, model, variables)` of the run in `workdir` at checkpoint `which`."""
  config = load_run_config(workdir)
  step, model, variables = load_readable_variables(config, workdir, which)
  return config, step, model, variables


def load_predictor(workdir: str, which: str = "best"):
  """`(config, step, predict_fn)` for the run in `workdir` at checkpoint `which`."""
  config, step, model, variables = load_model(workdir, which)
  norm = preprocessing.from_config(config)
  return config, step, inference.make_predict_fn(model, variables, norm)


def load_published(config: ml_collections.ConfigDict) -> tuple[nn.Module, dict]:
  """The model `config` describes with the published weights
  `config.model.weights` (a path, `hf:ORG/NAME` or `torchvision:NAME`): a
  network that predicts with no training run. Raises unless they fit."""
  if not config.model.get("weights"):
    raise errors.InvalidInput(
      "--config without --workdir predicts with published weights: set "
      "--config.model.weights (hf:ORG/NAME, torchvision:NAME or a file)"
    )
  spec = get_dataset_spec(config.data)
  model = create_model(config, spec.num_classes)
  shape = (1, *config.crop_size, preprocessing.from_config(config).channels)
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jax.numpy.zeros(shape), train=False)
  )
  abstract.setdefault("batch_stats", {})
  values, summary = published.network_values(
    config.model.weights, abstract, class_names=spec.class_names, fine_tune=False
  )
  print(summary)
  return model, traverse_util.unflatten_dict(values, sep="/")
