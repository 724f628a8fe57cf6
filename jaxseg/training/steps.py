"""The jitted steps: `train_step` (augment on device, forward, loss, backward,
update) and the evaluation steps (confusion matrix, tile logits, labels),
compiled for the mesh by `jit_train_step` / `jit_eval_steps`."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxseg import inference
from jaxseg.data import DatasetSpec, augment, preprocessing
from jaxseg.parallel import sharding
from jaxseg.scoring import boundary, metrics
from jaxseg.scoring import objective as objectives
from jaxseg.training import gradients, optim
from jaxseg.training.state import TrainState


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: nn.Module,
  optimizer: optim.Optimizer,
  rng: jax.Array,
  augmentation: augment.Augmentation,
  norm: preprocessing.Normalization,
  objective: objectives.Objective,
  micro_batches: int = 1,
  skip_nonfinite: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step: augment on device, forward, loss, backward, update.

  Randomness is `fold_in(rng, step)`, so a resumed run draws exactly what an
  uninterrupted one would. With `micro_batches = k` (`config.grad_accum_steps`)
  the augmented batch runs as k micro-batches with the whole batch's update
  (`gradients.loss_and_grads`). A `stop` entry in the batch (a flag per
  example) comes back as the metric `stop`, true if any process set it, so
  that all processes agree on when to stop. Non-finite steps: `_guarded`.
  """
  aug_rng, dropout_rng = jax.random.split(jax.random.fold_in(rng, state.step))
  image, label = augment.augment_batch(
    aug_rng, batch["image"], batch["label"], batch["size"], batch["base_scale"],
    settings=augmentation,
  )  # fmt: skip
  image = preprocessing.normalize(image, norm)

  def forward(params, batch_stats, image, rng):
    outputs, new_vars = model.apply(
      {"params": params, "batch_stats": batch_stats},
      image,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": rng},
    )
    return outputs, new_vars["batch_stats"]

  loss, parts, grads, batch_stats = gradients.loss_and_grads(
    forward, state.params, state.batch_stats, image, label, dropout_rng, objective, micro_batches
  )
  updates, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
  new_state = TrainState(
    step=state.step + 1,
    params=optax.apply_updates(state.params, updates),
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  grad_norm = optax.global_norm(grads)
  new_state, guard_metrics = _guarded(state, new_state, loss, grad_norm, batch, skip_nonfinite)
  lr = optimizer.schedule(state.step)
  step_metrics = {"loss": loss, **parts, "grad_norm": grad_norm, "learning_rate": lr}
  step_metrics.update(guard_metrics)
  if "stop" in batch:
    step_metrics["stop"] = jnp.any(batch["stop"])
  return new_state, step_metrics


def _guarded(state, new_state, loss, grad_norm, batch, skip_nonfinite: bool):
  """The metrics `nonfinite` (the loss or the gradient was NaN or infinite)
  and `finite_input` (the batch's pixels were all finite); with
  `skip_nonfinite` (`config.skip_nonfinite_steps`) such a step leaves the
  parameters, statistics and optimizer state as they were (the step count,
  hence the data and the schedule, still advance)."""
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if skip_nonfinite:
    keep = lambda new, old: jnp.where(finite, new, old)
    new_state = new_state.replace(
      params=jax.tree.map(keep, new_state.params, state.params),
      batch_stats=jax.tree.map(keep, new_state.batch_stats, state.batch_stats),
      opt_state=jax.tree.map(keep, new_state.opt_state, state.opt_state),
    )
  metrics = {
    "nonfinite": (~finite).astype(jnp.float32),
    "finite_input": jnp.all(jnp.isfinite(batch["image"])),
  }
  return new_state, metrics


def jit_train_step(
  config,
  model,
  optimizer,
  mesh,
  state_sharding,
  *,
  spec: DatasetSpec,
  num_classes: int | None = None,
  objective: objectives.Objective | None = None,
):
  """`train_step` compiled for the mesh: state donated, metrics replicated.

  The one the training loop runs and `jaxseg.benchmark` times (which may give
  the model another `num_classes` than the dataset's). `objective` defaults
  to the one `config.loss` describes.
  """
  num_classes, ignore_label = num_classes or spec.num_classes, spec.ignore_label
  if objective is None:
    foreground, _ = inference.decision(config, spec.class_names)
    objective = objectives.from_config(config, num_classes, ignore_label, foreground)
  step = functools.partial(
    train_step,
    model=model,
    optimizer=optimizer,
    rng=jax.random.fold_in(jax.random.key(config.seed), 1),
    augmentation=augment.Augmentation.from_config(config, num_classes, ignore_label),
    norm=preprocessing.from_config(config),
    objective=objective,
    micro_batches=config.grad_accum_steps,
    skip_nonfinite=config.get("skip_nonfinite_steps", False),
  )
  return jax.jit(
    step,
    in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
    out_shardings=(state_sharding, sharding.replicated(mesh)),
    donate_argnums=0,
  )


def variables(state: TrainState) -> dict:
  """The model's variables in `state`, as `model.apply` takes them."""
  return {"params": state.params, "batch_stats": state.batch_stats}


def eval_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  counts: dict[str, jax.Array],
  *,
  model: nn.Module,
  num_classes: int,
  ignore_label: int,
  foreground: int | None = None,
  threshold: float = 0.5,
  norm: preprocessing.Normalization = preprocessing.IMAGENET,
  boundary_width: int | None = None,
  trimap_widths: tuple[int, ...] = boundary.TRIMAP_WIDTHS,
) -> dict[str, jax.Array]:
  """Adds one batch's predictions (`inference.decide_logits`) to the running
  counts (`zero_counts`): the `[C, C]` confusion matrix, Boundary IoU's `[C, 2]`
  and the trimap's `[K, C, C]` (`scoring.boundary`; `boundary_width` None: 2%
  of each image's diagonal)."""
  logits = inference.forward_logits(model, variables(state), batch["image"], norm)
  predictions = inference.decide_logits(logits, foreground, threshold)
  label = batch["label"]
  valid = (label != ignore_label) & batch["mask"][:, None, None]
  edges = boundary.batch_counts(
    label, predictions, valid, batch["size"], num_classes, boundary_width, trimap_widths
  )
  confusion = metrics.confusion_matrix(label, predictions, num_classes, valid)
  return {
    "confusion": counts["confusion"] + confusion,
    "boundary": counts["boundary"] + edges["boundary"],
    "trimap": counts["trimap"] + edges["trimap"],
  }


def zero_counts(num_classes: int, trimap_widths: tuple[int, ...], xp=jnp) -> dict:
  """The counts `eval_step` adds to: int32 on the device (`xp=jnp`), int64 on the host."""
  dtype = xp.int32 if xp is jnp else np.int64
  return {
    "confusion": xp.zeros((num_classes, num_classes), dtype),
    "boundary": xp.zeros((num_classes, 2), dtype),
    "trimap": xp.zeros((len(trimap_widths), num_classes, num_classes), dtype),
  }


class EvalSteps(NamedTuple):
  """The compiled functions of evaluation during training.

  Attributes:
    counts: `(state, batch, counts) -> counts` (`eval_step`; the running
      counts donated).
    tile_logits: `(state, images) -> logits` of sliding-window tiles.
    labels: `(state, images) -> labels` of the pictures (replicated images).
  """

  counts: object
  tile_logits: object
  labels: object


def jit_eval_steps(
  model, mesh, state_sharding, spec: DatasetSpec, norm, foreground, threshold,
  boundary_settings=(None, boundary.TRIMAP_WIDTHS),
):  # fmt: skip
  """`EvalSteps` compiled for the mesh; `boundary_settings` is `(d, trimap
  widths)` (`scoring.boundary.settings`)."""
  batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  step = functools.partial(
    eval_step, model=model, num_classes=spec.num_classes, ignore_label=spec.ignore_label,
    foreground=foreground, threshold=threshold, norm=norm,
    boundary_width=boundary_settings[0], trimap_widths=tuple(boundary_settings[1]),
  )  # fmt: skip
  counts = jax.jit(
    step,
    in_shardings=(state_sharding, batch_sharding, replicated),
    out_shardings=replicated,
    donate_argnums=2,
  )
  logits = lambda state, images: inference.forward_logits(model, variables(state), images, norm)
  tile_logits = jax.jit(
    logits, in_shardings=(state_sharding, batch_sharding), out_shardings=replicated
  )
  labels = jax.jit(
    lambda state, images: inference.decide_logits(logits(state, images), foreground, threshold),
    # Every process holds the same pictures and gets every prediction back.
    in_shardings=(state_sharding, replicated),
    out_shardings=replicated,
  )
  return EvalSteps(counts, tile_logits, labels)
