"""The numbers of a config, checked before anything is built or compiled:
sizes, batch, steps, rates and ratios, each error naming its key."""

import math

import ml_collections

from jaxseg import errors

# key -> (lowest, highest, lowest excluded, whole numbers only)
_NUMBERS = {
  "batch_size": (1, math.inf, False, True),
  "eval_batch_size": (1, math.inf, False, True),
  "grad_accum_steps": (1, math.inf, False, True),
  "num_train_steps": (1, math.inf, False, True),
  "warmup_steps": (0, math.inf, False, True),
  "evaluation.boundary_width": (0, math.inf, False, True),
  "log_every_steps": (1, math.inf, False, True),
  "eval_every_steps": (1, math.inf, False, True),
  "checkpoint_every_steps": (1, math.inf, False, True),
  "keep_checkpoints": (1, math.inf, False, True),
  "num_pictures": (0, math.inf, False, True),
  "learning_rate": (0, math.inf, False, False),
  "end_learning_rate": (0, math.inf, False, False),
  "lr_power": (0, math.inf, True, False),
  "momentum": (0, 1, False, False),
  "weight_decay": (0, math.inf, False, False),
  "augment.cat_max_ratio": (0, 1, True, False),
  "data.num_threads": (1, math.inf, False, True),
  "data.prefetch_batches": (1, math.inf, False, True),
  "data.channels": (1, math.inf, False, True),
  "evaluation.batch_pixels": (1, math.inf, False, True),
}
# key -> whether () is allowed (the field then takes a default).
_SIZES = {"crop_size": False, "data.max_size": True, "augment.base_size": True,
          "evaluation.crop_size": True, "evaluation.stride": True}  # fmt: skip


def _get(config, key):
  node = config
  for part in key.split("."):
    if part not in node:
      return None
    node = node[part]
  return node


def in_range(value, low: float, high: float = math.inf, low_open: bool = False) -> bool:
  """Whether `value` is a finite number (not a bool) in `[low, high]` (`(low,
  high]` with `low_open`)."""
  ok = isinstance(value, int | float) and not isinstance(value, bool)
  return (
    ok and math.isfinite(value) and value <= high and (value > low if low_open else value >= low)
  )


def bound(low: float, high: float = math.inf, low_open: bool = False) -> str:
  """`in_range`'s bounds in words: `>= 0`, `> 0 and <= 1`."""
  return f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high < math.inf else "")


def check_numbers(config: ml_collections.ConfigDict) -> None:
  """Raises `errors.InvalidInput` naming the first field out of its range."""
  for key, (low, high, low_open, whole) in _NUMBERS.items():
    value = _get(config, key)
    if value is None:
      continue
    ok = in_range(value, low, high, low_open) and (not whole or float(value).is_integer())
    if not ok:
      kind = "a whole number" if whole else "a number"
      raise errors.InvalidInput(
        f"config.{key}={value!r} must be {kind} {bound(low, high, low_open)}"
      )
  for key, empty_ok in _SIZES.items():
    value = _get(config, key)
    if value is None or (empty_ok and len(value) == 0):
      continue
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
      allowed = " (or () for the default)" if empty_ok else ""
      raise errors.InvalidInput(
        f"config.{key}={tuple(value)!r} must be (height, width), two positive integers{allowed}"
      )
  widths = _get(config, "evaluation.trimap_widths")
  if widths is not None and not all(isinstance(w, int) and w > 0 for w in widths):
    raise errors.InvalidInput(
      f"config.evaluation.trimap_widths={tuple(widths)!r} must be positive whole pixels"
    )
  mode = _get(config, "evaluation.mode")
  if mode is not None and mode not in ("whole", "slide"):
    raise errors.InvalidInput(f"config.evaluation.mode={mode!r} must be 'whole' or 'slide'")
  channels = _get(config, "data.channels")
  if channels is not None and channels != 3 and _get(config, "augment.photometric"):
    raise errors.InvalidInput(
      f"config.augment.photometric=True distorts RGB colours; with config.data.channels="
      f"{channels} set it to False"
    )
  scale = _get(config, "augment.scale_range")
  if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
    raise errors.InvalidInput(
      f"config.augment.scale_range={tuple(scale)!r} must be (low, high) with 0 < low <= high"
    )
