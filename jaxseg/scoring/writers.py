"""Where results go: `metrics.json` (latest, best, evaluation), TensorBoard and
`scalars.jsonl` (`MetricWriter`), read back by `read_scalars`."""

import json
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np

from jaxseg import files


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
  if "biou" in metrics:
    record["mbiou"] = clean(metrics["mbiou"])
    record["biou"] = {n: clean(v) for n, v in zip(class_names, metrics["biou"], strict=True)}
    record["boundary_width"] = metrics["boundary_width"]
  if "trimap" in metrics:
    record["trimap"] = [
      {"width": row["width"], "miou": clean(row["miou"]), "aacc": clean(row["aacc"])}
      for row in metrics["trimap"]
    ]
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
  files.write_atomically(path, json.dumps(contents, indent=2))


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


def update_evaluation(path: str, record: dict) -> None:
  """Adds `record` under `evaluation` in the metrics file, keeping the training
  run's `latest` and `best`."""
  contents = _read_json(path)
  contents["evaluation"] = record
  _write_json_atomically(path, contents)
