"""Segmentation metrics from a global confusion matrix.

mIoU is computed once from a `[C, C]` confusion matrix summed over the whole
split, never as an average of per-batch IoUs.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(
  labels: jax.Array, predictions: jax.Array, num_classes: int, valid: jax.Array
) -> jax.Array:
  """Counts (label, prediction) pairs over the valid pixels.

  Args:
    labels: `[...]` int ground truth (values outside `[0, C)` must be masked
      out by `valid`).
    predictions: `[...]` int predicted classes in `[0, C)`.
    num_classes: C.
    valid: `[...]` bool; False pixels are not counted.

  Returns:
    `[C, C]` int32 matrix; rows are ground truth, columns predictions.
  """
  index = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.bincount(
    index.ravel(), weights=valid.ravel().astype(jnp.int32), length=num_classes**2
  )
  return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def compute_metrics(
  confusion: np.ndarray, foreground: int | None = None, threshold: float = 0.5
) -> dict[str, float | np.ndarray]:
  """Scores a confusion matrix.

  Classes absent from both ground truth and prediction have no IoU (NaN) and
  are left out of the means, as in mmsegmentation.

  Args:
    confusion: `[C, C]` counts, rows ground truth, columns predictions.
    foreground: in a binary run, the foreground class (its predictions made
      at `threshold`, which is recorded with its scores).
    threshold: see `foreground`.

  Returns:
    `iou`, `acc`, `dice`: `[C]` float64 per-class values (NaN where undefined);
    `miou`, `macc`, `mdice`: their NaN-ignoring means; `aacc`: pixel accuracy;
    with `foreground`, `foreground`: `foreground_metrics`.
  """
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  gt = confusion.sum(axis=1)
  pred = confusion.sum(axis=0)
  with np.errstate(divide="ignore", invalid="ignore"):
    iou = np.where(gt + pred - tp > 0, tp / (gt + pred - tp), np.nan)
    acc = np.where(gt > 0, tp / gt, np.nan)
    dice = np.where(gt + pred > 0, 2 * tp / (gt + pred), np.nan)
  total = confusion.sum()
  result = {
    "iou": iou,
    "acc": acc,
    "dice": dice,
    "miou": _nanmean(iou),
    "macc": _nanmean(acc),
    "mdice": _nanmean(dice),
    "aacc": float(tp.sum() / total) if total else float("nan"),
  }
  if foreground is not None:
    result["foreground"] = foreground_metrics(confusion, foreground)
    result["threshold"] = float(threshold)
  return result


def foreground_metrics(confusion: np.ndarray, foreground: int) -> dict[str, float]:
  """One class's scores as a detector of its pixels: `index`, `iou`, `f1`
  (= its Dice), `precision` and `recall` (NaN where undefined)."""
  confusion = np.asarray(confusion, np.float64)
  tp = confusion[foreground, foreground]
  false_neg = confusion[foreground].sum() - tp
  false_pos = confusion[:, foreground].sum() - tp
  ratio = lambda a, b: float(a / b) if b > 0 else float("nan")
  return {
    "index": foreground,
    "iou": ratio(tp, tp + false_pos + false_neg),
    "f1": ratio(2 * tp, 2 * tp + false_pos + false_neg),
    "precision": ratio(tp, tp + false_pos),
    "recall": ratio(tp, tp + false_neg),
  }


def _nanmean(x: np.ndarray) -> float:
  return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")


def confusion_of(
  predict_many: Callable[[list[np.ndarray]], list[np.ndarray]],
  examples,
  num_classes: int,
  ignore_label: int,
  *,
  batch_size: int = 1,
  limit: int = 0,
  progress: Callable[[int], object] = lambda n: None,
  on_image: Callable[[np.ndarray, np.ndarray], object] = lambda label, prediction: None,
) -> np.ndarray:
  """`[C, C]` int64 confusion matrix over `examples` (a sequence of dicts with
  `image` and `label`) at their own resolution.

  Args:
    predict_many: `[H, W, bands]` images -> `[H, W]` label maps, `batch_size` at a time.
    examples: random-access examples, e.g. `pipeline.decoded_split`'s.
    num_classes: `C`.
    ignore_label: label value left out of the counts.
    batch_size: images per `predict_many` call.
    limit: score only the first `limit` examples (0: all).
    progress: called with the number of images each call scored.
    on_image: called with each `(label, prediction)`, for other counts
      (`scoring.boundary`).
  """
  confusion = np.zeros(num_classes * num_classes, np.int64)
  n = min(len(examples), limit) if limit else len(examples)
  for start in range(0, n, batch_size):
    batch = [examples[i] for i in range(start, min(start + batch_size, n))]
    predictions = predict_many([e["image"] for e in batch])
    for example, prediction in zip(batch, predictions, strict=True):
      label = example["label"]
      valid = label != ignore_label
      index = label[valid].astype(np.int64) * num_classes + prediction[valid]
      confusion += np.bincount(index, minlength=num_classes * num_classes)
      on_image(label, prediction)
    progress(len(batch))
  return confusion.reshape(num_classes, num_classes)
