"""Training and evaluation: train_step, eval_step, train_and_evaluate.

The model, optimizer and state layout come from `state.build`; evaluation and
its pictures run the one forward pass of `inference.forward_logits`.
"""

import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import linen as nn
from PIL import Image
from tqdm.auto import tqdm

from jaxseg import (
  checkpoint,
  config_checks,
  distributed,
  errors,
  gradients,
  inference,
  metrics,
  optim,
  runs,
  sharding,
  visualize,
)
from jaxseg import objective as objectives
from jaxseg.data import DatasetSpec, augment, images, pipeline
from jaxseg.models import onednn, preprocessing
from jaxseg.state import TrainState, build


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss became NaN or infinite; the state of that step is not saved."""


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: nn.Module,
  optimizer: optim.Optimizer,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  ignore_label: int,
  num_classes: int,
  objective: objectives.Objective,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step: augment on device, forward, loss, backward, update.

  Randomness is `fold_in(rng, step)`, so a resumed run draws exactly what an
  uninterrupted one would. With `config.grad_accum_steps = k` the augmented
  batch runs as k micro-batches with the whole batch's update
  (`gradients.loss_and_grads`). A `stop` entry in the batch (a flag per example) comes back
  as the metric `stop`, true if any process set it, so that all processes
  agree on when to stop.
  """
  norm = preprocessing.from_config(config)
  step_rng = jax.random.fold_in(rng, state.step)
  aug_rng, dropout_rng = jax.random.split(step_rng)
  image, label = augment.augment_batch(
    aug_rng,
    batch["image"],
    batch["label"],
    batch["size"],
    batch["base_scale"],
    crop_size=config.crop_size,
    scale_range=config.augment.scale_range,
    flip=config.augment.flip,
    ignore_label=ignore_label,
    cat_max_ratio=config.augment.cat_max_ratio,
    num_classes=num_classes,
    photometric=config.augment.photometric,
    fill=norm.mean,
  )
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
    forward,
    state.params,
    state.batch_stats,
    image,
    label,
    dropout_rng,
    objective,
    config.grad_accum_steps,
  )
  updates, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
  new_state = TrainState(
    step=state.step + 1,
    params=optax.apply_updates(state.params, updates),
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  step_metrics = {
    "loss": loss,
    **parts,
    "grad_norm": optax.global_norm(grads),
    "learning_rate": optimizer.schedule(state.step),
  }
  if "stop" in batch:
    step_metrics["stop"] = jnp.any(batch["stop"])
  return new_state, step_metrics


def eval_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  confusion: jax.Array,
  *,
  model: nn.Module,
  num_classes: int,
  ignore_label: int,
  foreground: int | None = None,
  threshold: float = 0.5,
  norm: preprocessing.Normalization = preprocessing.IMAGENET,
) -> jax.Array:
  """Adds one batch's predictions (`inference.decide_logits`) to the running
  `[C, C]` confusion matrix."""
  logits = inference.forward_logits(model, _variables(state), batch["image"], norm)
  predictions = inference.decide_logits(logits, foreground, threshold)
  label = batch["label"]
  valid = (label != ignore_label) & batch["mask"][:, None, None]
  return confusion + metrics.confusion_matrix(label, predictions, num_classes, valid)


def evaluate(
  state: TrainState,
  eval_fn,
  tiles_fn,
  plan: pipeline.EvalPlan,
  config,
  spec,
  builder,
  mesh,
  foreground=None,
  threshold=0.5,
) -> dict:
  """Scores `state` on the whole eval split as `plan` says; returns
  `metrics.compute_metrics`.

  `eval_fn(state, batch, confusion)` scores a whole-image batch on the
  device; `tiles_fn(state, tiles)` gives the logits of a batch of
  sliding-window tiles for the images `plan` slides over.
  """
  c = spec.num_classes
  zeros = lambda: jax.device_put(jnp.zeros((c, c), jnp.int32), sharding.replicated(mesh))
  total, confusion = np.zeros((c, c), np.int64), zeros()
  counted = 0  # Pixels in the int32 counts on the device, flushed before they could overflow.
  for batch in pipeline.eval_batches(config, spec, builder, plan):
    pixels = batch["label"].size * jax.process_count()
    if counted + pixels > 2**31 - 1:
      total += np.asarray(jax.device_get(confusion), np.int64)
      confusion, counted = zeros(), 0
    confusion = eval_fn(state, sharding.to_global(batch, mesh), confusion)
    counted += pixels
  total += np.asarray(jax.device_get(confusion), np.int64)
  if plan.slide:
    crop = tuple(config.evaluation.crop_size) or tuple(config.crop_size)
    stride = tuple(config.evaluation.stride) or inference.default_stride(crop)
    tile_batch = pipeline.images_per_call(config, math.prod(crop), mesh)
    predict = _tile_predictor(lambda tiles: tiles_fn(state, tiles), tile_batch, mesh)
    pad = preprocessing.from_config(config).pad
    decide = lambda band: inference.decide(band, foreground, threshold).astype(np.int32)
    split = config.data.eval_split or spec.eval_split
    decoded, _ = pipeline.decoded_split(config, spec, builder, split)
    for index in plan.slide:  # Every process scores these (same data, same counts).
      example = decoded[index]
      predicted = inference.slide_map(
        predict, example["image"], decide, crop_size=crop, stride=stride,
        tile_batch=tile_batch, pad=pad,
      )  # fmt: skip
      label = example["label"]
      valid = label != spec.ignore_label
      total += np.bincount(label[valid] * c + predicted[valid], minlength=c * c).reshape(c, c)
  return metrics.compute_metrics(total, foreground, threshold)


def _tile_predictor(run, tile_batch: int, mesh):
  """`inference.PredictFn` over `run` (global tile batches of `tile_batch`):
  short batches are padded to it, and each process passes its slice."""
  share, p = tile_batch // jax.process_count(), jax.process_index()

  def predict(tiles: np.ndarray) -> np.ndarray:
    n = len(tiles)
    if n < tile_batch:
      tiles = np.concatenate([tiles, np.repeat(tiles[-1:], tile_batch - n, 0)])
    local = {"image": tiles[p * share : (p + 1) * share]}
    return np.asarray(run(sharding.to_global(local, mesh)["image"]))[:n]

  return predict


def _check_finite(step: int, step_metrics: dict) -> None:
  loss = float(step_metrics["loss"])
  if not math.isfinite(loss):
    raise NonFiniteLossError(
      f"Loss is {loss} at step {step}; stopping without checkpointing that state. "
      "Lower config.learning_rate or check the input data."
    )


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
    config=config,
    ignore_label=ignore_label,
    num_classes=num_classes,
    objective=objective,
  )
  return jax.jit(
    step,
    in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
    out_shardings=(state_sharding, sharding.replicated(mesh)),
    donate_argnums=0,
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, stop_at_step: int | None = None
) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Args:
    config: the experiment (see `configs/default.py`).
    workdir: checkpoints, TensorBoard events, `config.json` and `metrics.json`.
    stop_at_step: stop (with a checkpoint) after this step, as a preempted job
      would; the next call resumes. None trains to `config.num_train_steps`.

  SIGTERM or SIGINT (in the main thread) stops the run the same way: all
  processes finish the same step, save it and return.

  Returns:
    The last evaluation's metrics (`metrics.compute_metrics`) plus `step`; or,
    stopped before the end without evaluating, just `step` (and `stopped_by`,
    the signal's name, when a signal stopped it).
  """
  t_start = time.perf_counter()
  is_main = jax.process_index() == 0

  # Data and model. Everything that can be wrong with the config fails here,
  # before anything is compiled.
  config_checks.check_numbers(config)
  mesh = sharding.make_mesh(config)
  sharding.check_batch_layout(config, mesh)
  spec, builder = pipeline.prepare(config)
  pipeline.resolve_input(config, spec, builder)  # Fills in config.data.mean, std, dtype.
  norm = preprocessing.from_config(config)
  foreground, threshold = inference.decision(config, spec.class_names)
  objective = objectives.from_config(config, spec.num_classes, spec.ignore_label, foreground)
  model, optimizer, init_state, abstract_state, state_sharding = build(
    config, spec.num_classes, mesh
  )
  # A resumed run must be the experiment its checkpoints hold: checked before
  # anything in the workdir is written.
  changed = runs.check_resume(workdir, config, abstract_state)
  if is_main:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    if changed:
      _record_resume_changes(workdir, changed)

  # State: restored from the latest checkpoint, or freshly initialised.
  ckpt = checkpoint.for_run(workdir, config)
  start_step = ckpt.latest_step()
  if start_step is None:
    state = init_state()
    start_step = 0
  else:
    target = checkpoint.abstract_with_shardings(abstract_state, state_sharding)
    state = ckpt.restore(start_step, target)
    logging.info("Resumed from %s at step %d", ckpt.directory, start_step)
    if is_main:
      print(f"Resuming from step {start_step} ({ckpt.directory})")
  train_iter = pipeline.train_iterator(config, spec, builder, mesh, start_step)
  num_params = sum(x.size for x in jax.tree.leaves(abstract_state.params))
  if is_main:
    state_mb = sharding.bytes_per_device(abstract_state, state_sharding) / 2**20
    accum = f" in {config.grad_accum_steps} micro-batches" if config.grad_accum_steps > 1 else ""
    print(
      f"{config.model.name} on {config.data.name}: {num_params:,} parameters, "
      f"{jax.device_count()} {jax.devices()[0].platform} device(s) in "
      f"{jax.process_count()} process(es), train state {state_mb:.1f} MiB per device"
      f"{' (FSDP)' if config.mesh.fsdp else ''}, global batch {config.batch_size}{accum}, "
      f"crop {tuple(config.crop_size)}, {config.dtype}"
    )
    print(onednn.describe())
    print(f"loss: {objective.describe()}")

  # Compiled steps.
  batch_sharding = sharding.batch_sharding(mesh)
  p_train_step = jit_train_step(
    config,
    model,
    optimizer,
    mesh,
    state_sharding,
    spec=spec,
    objective=objective,
  )
  p_eval_step = jax.jit(
    functools.partial(
      eval_step,
      model=model,
      num_classes=spec.num_classes,
      ignore_label=spec.ignore_label,
      foreground=foreground,
      threshold=threshold,
      norm=norm,
    ),
    in_shardings=(state_sharding, batch_sharding, sharding.replicated(mesh)),
    out_shardings=sharding.replicated(mesh),
    donate_argnums=2,
  )

  p_tiles = jax.jit(
    lambda state, images: inference.forward_logits(model, _variables(state), images, norm),
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=sharding.replicated(mesh),
  )
  eval_plan = pipeline.eval_plan(config, spec, builder, mesh)
  if is_main:
    print(f"Evaluation: {eval_plan.describe()}")

  # The same few validation examples, drawn with their predictions at every evaluation.
  if config.num_pictures:
    pictures = pipeline.eval_examples(config, spec, builder, config.num_pictures)
    shown = images.to_rgb(pictures["image"])  # Bands stretched once, as pictures.
  p_predict = jax.jit(
    lambda state, images: inference.decide_logits(
      inference.forward_logits(model, _variables(state), images, norm), foreground, threshold
    ),
    # Every process holds the same pictures and gets every prediction back.
    in_shardings=(state_sharding, sharding.replicated(mesh)),
    out_shardings=sharding.replicated(mesh),
  )

  writer = metrics.MetricWriter(workdir, enabled=is_main)
  metrics_path = os.path.join(workdir, "metrics.json")
  last_step = config.num_train_steps if stop_at_step is None else stop_at_step
  last_step = min(last_step, config.num_train_steps)

  def run_eval(step: int) -> dict:
    t0 = time.perf_counter()
    result = evaluate(
      state, p_eval_step, p_tiles, eval_plan, config, spec, builder, mesh, foreground, threshold
    )
    record = metrics.to_json(result, spec.class_names, step)
    if config.num_pictures:
      predicted = np.asarray(p_predict(state, pictures["image"]))
      grid = visualize.prediction_grid(
        shown, pictures["label"], predicted, spec.palette, pictures["size"],
      )  # fmt: skip
      if is_main:
        Image.fromarray(grid).save(os.path.join(workdir, "predictions.png"))
        writer.image(step, "predictions", grid)
    if is_main:
      tqdm.write(
        f"\nEvaluation at step {step} on {config.data.name}/"
        f"{config.data.eval_split or spec.eval_split} ({time.perf_counter() - t0:.1f}s):\n"
        + metrics.format_table(result, spec.class_names)
      )
      metrics.update_metrics_file(metrics_path, record)
      scalars = {f"eval/{k}": result[k] for k in ("miou", "macc", "aacc", "mdice")}
      scalars.update({f"eval_iou/{n}": v for n, v in record["iou"].items() if v is not None})
      writer.scalars(step, scalars)
    return {**result, "step": step}

  # Training loop.
  result = None
  progress = tqdm(
    total=last_step,
    initial=start_step,
    desc="train",
    unit="step",
    disable=not is_main,
    mininterval=2.0,
    dynamic_ncols=True,
  )
  # The previous step's metrics and stop flag, read one step late to keep the device busy.
  pending = pending_stop = None
  t_loop = time.perf_counter()
  history, t_log, step_log = [], t_loop, start_step
  stop = distributed.StopRequest()
  stopped_by = None
  try:
    stop.install()
    for step in range(start_step + 1, last_step + 1):
      host_batch = next(train_iter)
      host_batch["stop"] = np.full(len(host_batch["image"]), stop.requested)
      state, step_metrics = p_train_step(state, sharding.to_global(host_batch, mesh))
      if pending is not None:
        _check_finite(*pending)
        # A signal seen by any process in the previous step: every process
        # stops after this one.
        if bool(pending_stop):
          stopped_by = stop.signal_name or "a signal to another process"
      pending_stop = step_metrics.pop("stop")
      pending = (step, step_metrics)
      history.append(step_metrics)
      progress.update(1)
      if step == start_step + 1:  # Compilation; keep it out of the throughput figures.
        jax.block_until_ready(step_metrics)
        if is_main:
          tqdm.write(
            f"Compiled the train step and ran it once in {time.perf_counter() - t_loop:.1f}s"
          )
        t_log, step_log = time.perf_counter(), step

      is_last = step == last_step or stopped_by is not None
      if step % config.log_every_steps == 0 or is_last:
        _check_finite(*pending)
        means = {k: float(np.mean(v)) for k, v in jax.device_get(_stack(history)).items()}
        elapsed = time.perf_counter() - t_log
        rate = (step - step_log) / elapsed
        means["steps_per_second"] = rate
        means["images_per_second"] = rate * config.batch_size
        writer.scalars(step, {f"train/{k}": v for k, v in means.items()})
        progress.set_postfix(
          loss=f"{means['loss']:.4f}",
          lr=f"{means['learning_rate']:.2e}",
          img_s=f"{means['images_per_second']:.1f}",
        )
        history, t_log, step_log = [], time.perf_counter(), step

      eval_now = step % config.eval_every_steps == 0 or step == config.num_train_steps
      if eval_now:
        _check_finite(*pending)
        result = run_eval(step)
        ckpt.save(step, state, metrics={"miou": result["miou"]}, force=True)
      elif is_last:
        _check_finite(*pending)
        ckpt.save(step, state, force=True)
      elif step % config.checkpoint_every_steps == 0:
        _check_finite(*pending)
        ckpt.save(step, state)
      if stopped_by is not None:
        break
    if result is None and start_step >= config.num_train_steps:
      # A finished run started again: report its final state.
      result = run_eval(start_step)
  finally:
    stop.uninstall()
    progress.close()
    ckpt.wait_until_finished()
    ckpt.close()
    writer.close()
  if stopped_by is not None and step < config.num_train_steps:
    if is_main:
      print(
        f"Stopped by {stopped_by} after step {step}; checkpoint saved in {ckpt.directory}. "
        "Run the same command to resume."
      )
    return {"step": step, "stopped_by": stopped_by}
  if result is None:  # Stopped early between evaluations.
    return {"step": last_step}
  if is_main:
    with open(metrics_path) as f:
      best = json.load(f)["best"]
    print(
      f"Final: step {result['step']}  mIoU {100 * result['miou']:.2f}  "
      f"(best {100 * best['miou']:.2f} at step {best['step']})  "
      f"[{_duration(time.perf_counter() - t_start)}]  workdir {workdir}"
    )
  return result


def _record_resume_changes(workdir: str, changed: dict) -> None:
  """Says which fields a resume changed and appends them to `resumes.jsonl`."""
  print("Resuming with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
  with open(os.path.join(workdir, "resumes.jsonl"), "a") as f:
    f.write(json.dumps({"changed": {k: list(v) for k, v in changed.items()}}) + "\n")


def _variables(state: TrainState) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats}


def _duration(seconds: float) -> str:
  return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _stack(history: list[dict]) -> dict:
  return {k: jnp.stack([h[k] for h in history]) for k in history[0]}
