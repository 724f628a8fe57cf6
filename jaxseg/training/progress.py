"""What a training run shows while it runs: the progress bar with loss,
learning rate and images/s, the logged means every `log_every_steps`, and the
check that the loss stayed finite."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxseg import errors


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss or the gradient became NaN or infinite; the state of that step
  is not saved."""


class FiniteGuard:
  """Checks each step's loss and gradient norm, one step late (read as the
  next step runs). A NaN or Inf stops the run with `NonFiniteLossError`,
  whose one line names the step and the likely cause; with
  `config.skip_nonfinite_steps` the step was skipped on the device and is
  counted here instead."""

  def __init__(self, config, *, enabled: bool):
    self.config, self.enabled = config, enabled
    self.skip = bool(config.get("skip_nonfinite_steps", False))
    self.skipped, self._checked = 0, 0

  def check(self, step: int, step_metrics: dict) -> None:
    if step <= self._checked:
      return
    self._checked = step
    if not step_metrics["nonfinite"]:
      return
    if self.skip:
      self.skipped += 1
      if self.enabled:
        tqdm.write(
          f"step {step}: loss {float(step_metrics['loss'])}, gradient norm "
          f"{float(step_metrics['grad_norm'])}: skipped ({self.skipped} so far)"
        )
      return
    raise NonFiniteLossError(self.describe(step, step_metrics))

  def describe(self, step: int, step_metrics: dict) -> str:
    loss, norm = float(step_metrics["loss"]), float(step_metrics["grad_norm"])
    lr = float(step_metrics["learning_rate"])
    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm} (loss {loss})"
    if not bool(step_metrics["finite_input"]):
      cause = (
        "the batch holds NaN or infinite pixel values (a nodata value in float images?): "
        "fix the data"
      )
    else:
      cause = f"learning rate {lr:.3g} at this step too high: lower config.learning_rate"
      if self.config.dtype != "float32":
        cause += f", or train in float32 (config.dtype={self.config.dtype} overflows sooner)"
      cause += "; labels outside the classes are refused when read, so not them"
    return (
      f"{what} at step {step}; stopped without saving that state (the last checkpoint is "
      f"kept). Likely cause: {cause}. --config.skip_nonfinite_steps=True skips such steps"
    )


class TrainLog:
  """The progress bar and the scalars of the training steps.

  Step metrics stay on the device until they are logged; the first step's
  time (compilation) is kept out of the throughput figures.
  """

  def __init__(self, writer, *, start_step: int, last_step: int, batch_size: int, enabled: bool):
    self.writer, self.batch_size, self.enabled = writer, batch_size, enabled
    self.start_step = start_step
    self.progress = tqdm(
      total=last_step, initial=start_step, desc="train", unit="step", disable=not enabled,
      mininterval=2.0, dynamic_ncols=True,
    )  # fmt: skip
    self.history: list[dict] = []
    self.t_log, self.step_log = time.perf_counter(), start_step

  def add(self, step: int, step_metrics: dict) -> None:
    """Records a step's metrics (device arrays; not read here)."""
    self.history.append(step_metrics)
    self.progress.update(1)
    if step == self.start_step + 1:
      jax.block_until_ready(step_metrics)
      if self.enabled:
        seconds = time.perf_counter() - self.t_log
        tqdm.write(f"Compiled the train step and ran it once in {seconds:.1f}s")
      self.t_log, self.step_log = time.perf_counter(), step

  def write(self, step: int) -> None:
    """Logs the means of the steps since the last write, and the throughput."""
    stacked = {k: jnp.stack([h[k] for h in self.history]) for k in self.history[0]}
    means = {k: float(np.mean(v)) for k, v in jax.device_get(stacked).items()}
    rate = (step - self.step_log) / (time.perf_counter() - self.t_log)
    means["steps_per_second"] = rate
    means["images_per_second"] = rate * self.batch_size
    self.writer.scalars(step, {f"train/{k}": v for k, v in means.items()})
    self.progress.set_postfix(
      loss=f"{means['loss']:.4f}",
      lr=f"{means['learning_rate']:.2e}",
      img_s=f"{means['images_per_second']:.1f}",
    )
    self.history, self.t_log, self.step_log = [], time.perf_counter(), step

  def close(self) -> None:
    self.progress.close()
