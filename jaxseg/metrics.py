"""Segmentation metrics from a global confusion matrix, tables and writers.

mIoU is computed once from a `[C, C]` confusion matrix summed over the whole
split, never as an average of per-batch IoUs.
"""

import json
import logging
import os
from collections.abc import Mapping, Sequence

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


def format_table(metrics: Mapping, class_names: Sequence[str]) -> str:
  """A per-class table (IoU, accuracy) and the summary line, in percent."""
  width = max(len("class"), *(len(n) for n in class_names))
  lines = [f"{'class':<{width}}    IoU     Acc", "-" * (width + 16)]
  for name, iou, acc in zip(class_names, metrics["iou"], metrics["acc"], strict=True):
    lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}")
  lines.append("-" * (width + 16))
  lines.append(
    f"mIoU {_pct(metrics['miou']).strip()}  mAcc {_pct(metrics['macc']).strip()}  "
    f"aAcc {_pct(metrics['aacc']).strip()}  mDice {_pct(metrics['mdice']).strip()}"
  )
  if "foreground" in metrics:
    fg = metrics["foreground"]
    lines.append(
      f"{class_names[fg['index']]} (probability >= {metrics['threshold']:g}): "
      f"IoU {_pct(fg['iou']).strip()}  F1 {_pct(fg['f1']).strip()}  "
      f"precision {_pct(fg['precision']).strip()}  recall {_pct(fg['recall']).strip()}"
    )
  return "\n".join(lines)


def _pct(x: float) -> str:
  return "   n/a" if np.isnan(x) else f"{100 * x:6.2f}"


def to_json(metrics: Mapping, class_names: Sequence[str], step: int) -> dict:
  """A JSON-ready record: scalars plus per-class IoU and accuracy by class name."""

  def clean(x):
    return None if np.isnan(x) else round(float(x), 6)

  record = {
    "step": int(step),
    "miou": clean(metrics["miou"]),
    "macc": clean(metrics["macc"]),
    "aacc": clean(metrics["aacc"]),
    "mdice": clean(metrics["mdice"]),
    "iou": {n: clean(v) for n, v in zip(class_names, metrics["iou"], strict=True)},
    "acc": {n: clean(v) for n, v in zip(class_names, metrics["acc"], strict=True)},
  }
  if "foreground" in metrics:
    fg = metrics["foreground"]
    record["foreground"] = {
      "class": class_names[fg["index"]],
      "threshold": metrics["threshold"],
      **{k: clean(fg[k]) for k in ("iou", "f1", "precision", "recall")},
    }
  return record


def update_metrics_file(path: str, record: dict) -> dict:
  """Writes `record` as `latest` into the JSON file at `path`, and as `best` if
  its mIoU beats the stored best. Returns the file's new contents."""
  contents = _read_json(path)
  contents["latest"] = record
  best = contents.get("best")
  if best is None or (record["miou"] or 0.0) > (best["miou"] or 0.0):
    contents["best"] = record
  _write_json_atomically(path, contents)
  return contents


def _read_json(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _write_json_atomically(path: str, contents: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(contents, f, indent=2)
  os.replace(tmp, path)


class MetricWriter:
  """Scalars to TensorBoard and to `scalars.jsonl` (one JSON object per write),
  which notebooks and tests read without TensorBoard. Process 0 only."""

  def __init__(self, logdir: str, enabled: bool = True):
    self._writer = self._jsonl = None
    if enabled:
      from tensorboardX import SummaryWriter

      self._writer = SummaryWriter(logdir)
      self._jsonl = open(os.path.join(logdir, "scalars.jsonl"), "a")

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    for name, value in values.items():
      self._writer.add_scalar(name, float(value), step)
    record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
    # One write per line, so a process killed mid-write leaves at most a torn last line.
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """An `[H, W, 3]` uint8 picture to TensorBoard."""
    if self._writer is not None:
      self._writer.add_image(name, image, step, dataformats="HWC")

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._jsonl.close()


def read_scalars(workdir: str) -> list[dict]:
  """The records `MetricWriter` appended to `workdir/scalars.jsonl`, in order.

  A resumed run appends the steps after its checkpoint again; the later
  record of a step is the one that counts. A line torn by a killed process is
  skipped with a warning.
  """
  records = []
  path = os.path.join(workdir, "scalars.jsonl")
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        logging.warning("%s line %d is incomplete (a killed run?); skipped", path, number)
  return records


def confusion_image(confusion: np.ndarray, class_names: Sequence[str], cell: int = 36):
  """A picture of the row-normalised confusion matrix (ground truth down,
  prediction across; darker is more), each cell labelled with its percentage.

  Returns a PIL image.
  """
  from PIL import Image, ImageDraw

  confusion = np.asarray(confusion, np.float64)
  rows = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  c = len(class_names)
  label_width = 8 * max(len(n) for n in class_names) + 12
  size = (label_width + c * cell + 4, label_width + c * cell + 4)
  image = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(image)
  draw.text((4, 4), "rows: truth", fill="black")
  draw.text((4, 18), "columns: prediction", fill="black")
  draw.text((4, 32), "% of each row", fill="black")
  for i, name in enumerate(class_names):
    draw.text((4, label_width + i * cell + cell // 3), name, fill="black")
    # Column labels, written vertically.
    column = Image.new("RGB", (label_width, cell), "white")
    ImageDraw.Draw(column).text((4, cell // 3), name, fill="black")
    image.paste(column.rotate(90, expand=True), (label_width + i * cell, 0))
  for i in range(c):
    for j in range(c):
      shade = int(255 * (1 - rows[i, j]))
      x0, y0 = label_width + j * cell, label_width + i * cell
      draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255))
      text = f"{100 * rows[i, j]:.0f}"
      draw.text((x0 + 6, y0 + cell // 3), text, fill="white" if shade < 128 else "black")
  return image


def update_evaluation(path: str, record: dict) -> None:
  """Adds `record` under `evaluation` in the metrics file, keeping the training
  run's `latest` and `best`."""
  contents = _read_json(path)
  contents["evaluation"] = record
  _write_json_atomically(path, contents)
