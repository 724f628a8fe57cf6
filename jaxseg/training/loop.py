"""`train_and_evaluate`: a run from its config to its final evaluation.

A short loop of named pieces: `prepare` (everything that can be wrong with
the config fails there, before anything compiles or is written),
`restore_or_initialise`, the jitted steps (`training.steps`), the evaluator
(`training.evaluation`), the log (`training.progress`) and the checkpoints
(`training.checkpoint`).
"""

import json
import os
import time
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxseg import config_checks, inference
from jaxseg.data import pipeline, preprocessing
from jaxseg.models import onednn
from jaxseg.parallel import distributed, sharding
from jaxseg.scoring import boundary, writers
from jaxseg.scoring import objective as objectives
from jaxseg.training import checkpoint, evaluation, progress, runs, state, steps
from jaxseg.training import lock as workdir_lock

NonFiniteLossError = progress.NonFiniteLossError  # Raised by a run whose loss diverged.


class Experiment(NamedTuple):
  """A config made concrete: its mesh, data, decision rule, loss and state.

  Attributes:
    config: the experiment, with the data's normalisation filled in.
    mesh: the device mesh.
    spec, builder: the dataset and its TFDS builder.
    decision: `(foreground, threshold)` (`inference.decision`).
    objective: the loss (`scoring.objective`).
    setup: model, optimizer and the state's layout (`state.build`).
    lock: this process's hold on the workdir (`training.lock`).
  """

  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  spec: object
  builder: object
  decision: tuple
  objective: objectives.Objective
  setup: state.Setup
  lock: workdir_lock.Held


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
  ex = prepare(config, workdir)
  try:
    return _train(ex, workdir, stop_at_step, t_start)
  finally:
    ex.lock.release()


def _train(ex: "Experiment", workdir: str, stop_at_step: int | None, t_start: float) -> dict:
  """`train_and_evaluate` once the workdir is held."""
  config, is_main = ex.config, jax.process_index() == 0
  model, optimizer, _, _, state_sharding = ex.setup
  ckpt = checkpoint.for_run(workdir, config)
  train_state, start_step = restore_or_initialise(ckpt, ex.setup)
  train_iter = pipeline.train_iterator(config, ex.spec, ex.builder, ex.mesh, start_step)
  if is_main:
    describe(ex)
  train_step = steps.jit_train_step(
    config, model, optimizer, ex.mesh, state_sharding, spec=ex.spec, objective=ex.objective
  )
  norm = preprocessing.from_config(config)
  eval_steps = steps.jit_eval_steps(
    model, ex.mesh, state_sharding, ex.spec, norm, *ex.decision, boundary.settings(config)
  )
  writer = writers.MetricWriter(workdir, enabled=is_main)
  evaluate = evaluation.Evaluator(
    config, ex.spec, ex.builder, ex.mesh, eval_steps, ex.decision, writer, workdir
  )
  if is_main:
    print(f"Evaluation: {evaluate.plan.describe()}")
  last_step = config.num_train_steps
  if stop_at_step is not None:
    last_step = min(stop_at_step, last_step)
  log = progress.TrainLog(writer, start_step=start_step, last_step=last_step,
                          batch_size=config.batch_size, enabled=is_main)  # fmt: skip
  result, stop, stopped_by, step = None, distributed.StopRequest(), None, start_step
  guard = progress.FiniteGuard(config, enabled=is_main)
  # The previous step's metrics and stop flag, read one step late to keep the device busy.
  pending = pending_stop = None
  try:
    stop.install()
    for step in range(start_step + 1, last_step + 1):
      host_batch = next(train_iter)
      host_batch["stop"] = np.full(len(host_batch["image"]), stop.requested)
      train_state, step_metrics = train_step(train_state, sharding.to_global(host_batch, ex.mesh))
      if pending is not None:
        guard.check(*pending)
        if bool(pending_stop):  # Seen by any process in the previous step: all stop after this.
          stopped_by = stop.signal_name or "a signal to another process"
      pending_stop = step_metrics.pop("stop")
      pending = (step, {**step_metrics, "finite_input": step_metrics.pop("finite_input")})
      log.add(step, step_metrics)
      is_last = step == last_step or stopped_by is not None
      if step % config.log_every_steps == 0 or is_last:
        guard.check(*pending)
        log.write(step)
      if _saves(step, is_last, config):
        guard.check(*pending)  # A state whose loss is not finite is never saved.
        result = _evaluate_and_save(ckpt, evaluate, train_state, step, is_last, config) or result
      if stopped_by is not None:
        break
    if result is None and start_step >= config.num_train_steps:
      result = evaluate(train_state, start_step)  # A finished run started again: its final state.
  finally:
    stop.uninstall()
    log.close()
    try:
      ckpt.wait_until_finished()
    finally:
      ckpt.close()
      writer.close()
  if guard.skipped and is_main:
    print(f"{guard.skipped} steps with a non-finite loss or gradient skipped (this session)")
  return _report_end(config, workdir, ckpt, result, step, last_step, stopped_by, t_start)


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Experiment:
  """Checks `config` and builds what the run needs, before anything compiles;
  takes the workdir (one live process at a time); a resumed run must be the
  experiment its checkpoints hold (checked before anything in `workdir` is
  written). Then writes `config.json`."""
  config_checks.check_numbers(config)
  mesh = sharding.make_mesh(config)
  sharding.check_batch_layout(config, mesh)
  spec, builder = pipeline.prepare(config)
  pipeline.resolve_input(config, spec, builder)  # Fills in config.data.mean, std, dtype.
  decision = inference.decision(config, spec.class_names)
  objective = objectives.from_config(config, spec.num_classes, spec.ignore_label, decision[0])
  setup = state.build(config, spec.num_classes, mesh)
  held = workdir_lock.hold(workdir, "training")
  try:
    changed = runs.check_resume(workdir, config, setup.abstract_state)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
      if changed:
        _record_resume_changes(workdir, changed)
  except BaseException:
    held.release()
    raise
  return Experiment(config, mesh, spec, builder, decision, objective, setup, held)


def restore_or_initialise(ckpt: checkpoint.Checkpointer, setup: state.Setup):
  """`(state, step)`: the newest checkpoint that reads completely, restored
  into the state's shardings (damaged ones set aside, each named in a
  warning), or a fresh state at step 0."""
  target = checkpoint.abstract_with_shardings(setup.abstract_state, setup.state_sharding)
  newest = ckpt.restore_newest(target)
  if newest is None:
    return setup.init_state(), 0
  restored, start_step = newest
  logging.info("Resumed from %s at step %d", ckpt.directory, start_step)
  if jax.process_index() == 0:
    print(f"Resuming from step {start_step} ({ckpt.directory})")
  return restored, start_step


def describe(ex: Experiment) -> None:
  """The run in three lines: model, data, devices, memory; convolutions; loss."""
  config, setup = ex.config, ex.setup
  num_params = sum(x.size for x in jax.tree.leaves(setup.abstract_state.params))
  state_mb = sharding.bytes_per_device(setup.abstract_state, setup.state_sharding) / 2**20
  accum = f" in {config.grad_accum_steps} micro-batches" if config.grad_accum_steps > 1 else ""
  print(
    f"{config.model.name} on {config.data.name}: {num_params:,} parameters, "
    f"{jax.device_count()} {jax.devices()[0].platform} device(s) in "
    f"{jax.process_count()} process(es), train state {state_mb:.1f} MiB per device"
    f"{' (FSDP)' if config.mesh.fsdp else ''}, global batch {config.batch_size}{accum}, "
    f"crop {tuple(config.crop_size)}, {config.dtype}"
  )
  print(onednn.describe())
  print(f"loss: {ex.objective.describe()}")


def _evaluates(step: int, config) -> bool:
  return step % config.eval_every_steps == 0 or step == config.num_train_steps


def _saves(step: int, is_last: bool, config) -> bool:
  """Whether this step evaluates or saves a checkpoint."""
  return _evaluates(step, config) or is_last or step % config.checkpoint_every_steps == 0


def _evaluate_and_save(ckpt, evaluate, train_state, step: int, is_last: bool, config):
  """Evaluates (and saves, with its mIoU) every `eval_every_steps` and at the
  end of training; otherwise saves at the end of this call's steps and every
  `checkpoint_every_steps`. Returns the evaluation's result, if any."""
  if _evaluates(step, config):
    result = evaluate(train_state, step)
    ckpt.save(step, train_state, metrics={"miou": result["miou"]}, force=True)
    return result
  if is_last:
    ckpt.save(step, train_state, force=True)
  elif step % config.checkpoint_every_steps == 0:
    ckpt.save(step, train_state)
  return None


def _report_end(config, workdir, ckpt, result, step, last_step, stopped_by, t_start) -> dict:
  """What `train_and_evaluate` returns, with its last line printed."""
  is_main = jax.process_index() == 0
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
    with open(os.path.join(workdir, "metrics.json")) as f:
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


def _duration(seconds: float) -> str:
  return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
