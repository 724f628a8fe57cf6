"""The train state: what it holds, how it is initialised and laid out on the mesh.

`build` is the one place a run's model, optimizer and state layout come from
(training, the benchmark, restoring a run to resume it); `initial_values` the
arrays a fresh run starts from instead of random ones.
"""

import functools
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn

from jaxseg import errors
from jaxseg.data import get_dataset_spec
from jaxseg.models import create_model, pretrained, published
from jaxseg.parallel import sharding
from jaxseg.training import checkpoint, optim


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a plain pytree, checkpointed whole."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


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


class Setup(NamedTuple):
  """What `build` returns.

  Attributes:
    model: the network.
    optimizer: its optimizer and learning-rate schedule (`training.optim`).
    init_state: materialises a fresh state (with `initial_values`) directly
      in its shardings.
    abstract_state: the state's shapes and dtypes (`jax.eval_shape`), also
      the restore target of its checkpoints.
    state_sharding: the state's shardings on the mesh.
  """

  model: nn.Module
  optimizer: optim.Optimizer
  init_state: Callable[[], TrainState]
  abstract_state: TrainState
  state_sharding: TrainState


def build(config: ml_collections.ConfigDict, num_classes: int, mesh) -> Setup:
  """Model, optimizer and the train state's abstract form and shardings."""
  model = create_model(config, num_classes)
  optimizer = optim.create(config)
  tx = optimizer.tx
  init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  init_fn = functools.partial(
    create_train_state,
    model=model,
    tx=tx,
    image_shape=(1, *config.crop_size, config.data.get("channels", 3)),
  )
  abstract_state = jax.eval_shape(init_fn, init_rng)
  state_sharding = sharding.state_shardings(abstract_state, mesh, config)

  def init_state() -> TrainState:
    values, summary = initial_values(config, model, abstract_state)  # Checked before compiling.
    state = jax.jit(init_fn, out_shardings=state_sharding)(init_rng)
    if values:
      state = _with_values(state, values, state_sharding)
      logging.info("%s", summary)
      if jax.process_index() == 0:
        print(summary)
    return state

  return Setup(model, optimizer, init_state, abstract_state, state_sharding)


def initial_values(config: ml_collections.ConfigDict, model: nn.Module, abstract_state: TrainState):
  """The arrays a fresh run starts from instead of random ones, checked
  against the model: `config.init_from` (another jaxseg run's checkpoint;
  arrays whose shapes differ, e.g. a classifier for other classes, keep their
  random initialisation), else `config.model.backbone_weights` (an ImageNet
  backbone, `models.pretrained`), else `config.model.weights` (a whole
  published network, `models.published`: fine-tuning, its classifiers
  re-initialised where the class count differs).

  Returns `(values, summary)`: full paths ("params/backbone/conv1/kernel") to
  numpy arrays, and a line for the log; `({}, "")` for a run from scratch.
  """
  abstract = {"params": abstract_state.params, "batch_stats": abstract_state.batch_stats}
  if config.get("init_from"):
    variables, directory = checkpoint.read_variables(config.init_from)
    found, target = pretrained.flatten_dict(variables), pretrained.flatten_dict(abstract)
    source = f"config.init_from={config.init_from!r} ({directory})"
    reinit = [k for k in target if k in found and found[k].shape != target[k].shape]
    # New layers (the FCN paper's staged training: 16s from a trained 32s)
    # keep their initialisation only when asked; else a missing array is an error.
    new = [k for k in target if k not in found] if config.get("init_from_new_layers") else []
    values = {k: v for k, v in found.items() if k not in reinit}
    expected = {k: v for k, v in target.items() if k not in reinit and k not in new}
    pretrained.check_fits(values, expected, source)
    if not values:
      raise errors.InvalidInput(f"{source} shares no array with the model")
    summary = f"Initialised from {directory}: {len(values)} of {len(target)} arrays"
    if reinit:
      changed = [f"{k} {found[k].shape}->{target[k].shape}" for k in reinit]
      summary += f"; re-initialised, shapes differ: {', '.join(changed)}"
    if new:
      summary += f"; new, not in the checkpoint, initialised: {', '.join(new)}"
    return values, summary
  if config.model.get("backbone_weights"):
    return pretrained.backbone_values(model, config.model.backbone_weights, abstract)
  if config.model.get("weights"):
    return published.network_values(
      config.model.weights,
      abstract,
      class_names=get_dataset_spec(config.data).class_names,
      fine_tune=True,
    )
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
