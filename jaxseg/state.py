"""The train state: what it holds, how it is initialised and laid out on the mesh."""

import functools
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from jaxseg import checkpoint, sharding
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


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD with momentum and weight decay (added to the gradient, as PyTorch does)."""
  return optax.chain(
    optax.add_decayed_weights(config.weight_decay),
    optax.sgd(learning_rate_schedule(config), momentum=config.momentum),
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
  init_state = lambda: jax.jit(init_fn, out_shardings=state_sharding)(init_rng)
  return model, tx, init_state, abstract_state, state_sharding


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
