"""The learning-rate schedule and the optimizer of a config, built once per run.

`create(config)` returns both: the optimizer (an optax transformation on the
schedule) updates the train state, and the schedule is what the train step
logs as `learning_rate`.
"""

from typing import NamedTuple

import ml_collections
import optax

from jaxseg import errors

OPTIMIZERS = ("sgd", "adamw")


class Optimizer(NamedTuple):
  """`tx` updates parameters; `schedule(step)` is its learning rate."""

  tx: optax.GradientTransformation
  schedule: optax.Schedule


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


def create(config: ml_collections.ConfigDict) -> Optimizer:
  """`config.optimizer` on the learning-rate schedule.

  "sgd": SGD with momentum, weight decay added to the gradient (PyTorch's
  `SGD(weight_decay=)`, the papers' and mmsegmentation's recipe). "adamw":
  Adam with decoupled weight decay (PyTorch's `AdamW`), which trains deep
  networks without skip connections from scratch several times faster here.
  """
  name = config.get("optimizer", "sgd")  # Runs from before the option used SGD.
  if name not in OPTIMIZERS:
    raise errors.InvalidInput(f"config.optimizer={name!r} must be one of {OPTIMIZERS}")
  schedule = learning_rate_schedule(config)
  if name == "adamw":
    tx = optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=config.weight_decay)
  else:
    tx = optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(schedule, momentum=config.momentum),
    )
  return Optimizer(tx, schedule)
