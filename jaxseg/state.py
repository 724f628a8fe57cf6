"""The train state: what it holds, how it is initialised and laid out on the mesh."""

import functools
import logging
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jaxseg import checkpoint, pretrained, sharding
from jaxseg.models import create_model


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a plain pytree, checkpointed whole."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to `config.learning_rate`, then polynomial ("poly") decay."""
  warmup = config.warmup_steps
  decay = optax.polynomial_schedule(
    init_value=config.learning_rate,
    end_value=config.end_learning_rate,
    power=config.lr_power,
    transition_steps=max(config.num_train_steps - warmup, 1),
  )
  if not warmup:
    return decay
  ramp = optax.linear_schedule(0.0, config.learning_rate, warmup)
  return optax.join_schedules([ramp, decay], boundaries=[warmup])


OPTIMIZERS = ("sgd", "adamw")


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`config.optimizer` on the learning-rate schedule.

  "sgd": SGD with momentum, weight decay added to the gradient (PyTorch's
  `SGD(weight_decay=)`, the papers' and mmsegmentation's recipe). "adamw":
  Adam with decoupled weight decay (PyTorch's `AdamW`), which trains deep
  networks without skip connections from scratch several times faster here.
  """
  name = config.get("optimizer", "sgd")  # Runs from before the option used SGD.
  if name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer={name!r} must be one of {OPTIMIZERS}")
  schedule = learning_rate_schedule(config)
  if name == "adamw":
    return optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=config.weight_decay)
  return optax.chain(
    optax.add_decayed_weights(config.weight_decay),
    optax.sgd(schedule, momentum=config.momentum),
  )


def create_train_state(
  rng: jax.Array, model: nn.Module, tx: optax.GradientTransformation, image_shape
) -> TrainState:
  """Initialises parameters, batch statistics and optimizer state."""
  params_rng, dropout_rng = jax.random.split(rng)
  variables = model.init(
    {"params": params_rng, "dropout": dropout_rng}, jnp.zeros(image_shape), train=True
  )
  params = variables["params"]
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get("batch_stats", {}),
    opt_state=tx.init(params),
  )


def build(config: ml_collections.ConfigDict, num_classes: int, mesh):
  """Model, optimizer and the train state's abstract form and shardings.

  Returns:
    `(model, tx, init_state, abstract_state, state_sharding)`; `init_state()`
    materialises a fresh state directly in its shardings.
  """
  model = create_model(config, num_classes)
  tx = create_optimizer(config)
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  init_fn = functools.partial(
    create_train_state, model=model, tx=tx, image_shape=(1, *config.crop_size, 3)
  )
  abstract_state = jax.eval_shape(init_fn, init_rng)
  state_sharding = sharding.state_shardings(abstract_state, mesh, config)

  def init_state() -> TrainState:
    values, summary = initial_values(config, abstract_state)  # Checked before compiling.
    state = jax.jit(init_fn, out_shardings=state_sharding)(init_rng)
    if values:
      state = _with_values(state, values, state_sharding)
      logging.info("%s", summary)
      if jax.process_index() == 0:
        print(summary)
    return state

  return model, tx, init_state, abstract_state, state_sharding


def initial_values(config: ml_collections.ConfigDict, abstract_state: TrainState):
  """The arrays a fresh run starts from instead of random ones, checked
  against the model: `config.init_from` (another jaxseg run's checkpoint;
  arrays whose shapes differ, e.g. a classifier for other classes, keep their
  random initialisation), else `config.model.backbone_weights` (an ImageNet
  backbone, `jaxseg.pretrained`).

  Returns `(values, summary)`: full paths ("params/backbone/conv1/kernel") to
  numpy arrays, and a line for the log; `({}, "")` for a run from scratch.
  """
  abstract = {"params": abstract_state.params, "batch_stats": abstract_state.batch_stats}
  if config.get("init_from"):
    variables, directory = checkpoint.read_variables(config.init_from)
    found, target = pretrained.flatten_dict(variables), pretrained.flatten_dict(abstract)
    source = f"config.init_from={config.init_from!r} ({directory})"
    reinit = [k for k in target if k in found and found[k].shape != target[k].shape]
    values = {k: v for k, v in found.items() if k not in reinit}
    pretrained.check_fits(values, {k: v for k, v in target.items() if k not in reinit}, source)
    summary = f"Initialised from {directory}: {len(values)} of {len(target)} arrays"
    if reinit:
      changed = [f"{k} {found[k].shape}->{target[k].shape}" for k in reinit]
      summary += f"; re-initialised, shapes differ: {', '.join(changed)}"
    return values, summary
  if config.model.get("backbone_weights"):
    return pretrained.backbone_values(config.model, abstract)
  return {}, ""


def _with_values(state: TrainState, values: dict, shardings: TrainState) -> TrainState:
  """`state` with the arrays at `values`' paths replaced, in their shardings."""

  def replace(path, leaf, leaf_sharding):
    key = "/".join(str(getattr(p, "key", p)) for p in path)
    if key not in values:
      return leaf
    value = np.asarray(values[key], leaf.dtype)
    return jax.make_array_from_callback(value.shape, leaf_sharding, lambda index: value[index])

  variables = {"params": state.params, "batch_stats": state.batch_stats}
  variable_shardings = {"params": shardings.params, "batch_stats": shardings.batch_stats}
  new = jax.tree_util.tree_map_with_path(replace, variables, variable_shardings)
  return state.replace(params=new["params"], batch_stats=new["batch_stats"])


def check_batch_layout(config: ml_collections.ConfigDict, mesh) -> None:
  """Fails, naming the config keys, unless each micro-batch splits evenly over
  the devices and processes."""
  accum, devices = config.grad_accum_steps, mesh.shape[sharding.DATA_AXIS]
  if not isinstance(accum, int) or accum < 1:
    raise ValueError(f"config.grad_accum_steps={accum!r} must be a positive integer")
  if config.batch_size % (accum * devices):
    raise ValueError(
      f"config.batch_size={config.batch_size} must be divisible by config.grad_accum_steps "
      f"({accum}) times the number of devices ({devices})"
    )
  sharding.per_process_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")


def checkpointer(config: ml_collections.ConfigDict, workdir: str) -> checkpoint.Checkpointer:
  """The run's checkpoints, under `workdir/checkpoints`."""
  return checkpoint.Checkpointer(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    keep=config.keep_checkpoints,
    save_every_steps=config.checkpoint_every_steps,
  )
