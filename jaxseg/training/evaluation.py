"""Evaluation during training: the whole validation split scored on the
device as `pipeline.eval_plan` lays it out (batches of whole images, sliding
windows for the images too large for them), the per-class table, the
prediction pictures, `metrics.json` and TensorBoard."""

import math
import os
import time

import jax
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from jaxseg import files, inference
from jaxseg.data import images, pipeline, preprocessing
from jaxseg.parallel import sharding
from jaxseg.scoring import boundary, metrics, pictures, tables, writers
from jaxseg.training import steps
from jaxseg.training.state import TrainState

# The int32 counts of the device's confusion matrix are flushed to the host before this.
_MAX_DEVICE_COUNT = 2**31 - 1


def evaluate(
  state: TrainState,
  eval_steps: steps.EvalSteps,
  plan: pipeline.EvalPlan,
  config,
  spec,
  builder,
  mesh,
  foreground=None,
  threshold=0.5,
) -> dict:
  """Scores `state` on the whole eval split as `plan` says; returns
  `metrics.compute_metrics` with Boundary IoU and the trimap
  (`scoring.boundary`)."""
  edges = boundary.Counter(config, spec)
  total = _whole_image_counts(state, eval_steps.counts, plan, config, spec, builder, mesh)
  if plan.slide:
    total["confusion"] += _slid_confusion(
      state, eval_steps.tile_logits, plan, config, spec, builder, mesh, foreground, threshold,
      edges,
    )  # fmt: skip
  edges.add_counts(total)
  return {**metrics.compute_metrics(total["confusion"], foreground, threshold), **edges.scores()}


def _whole_image_counts(state, counts_step, plan, config, spec, builder, mesh) -> dict:
  """`steps.zero_counts` (int64) of the plan's whole-image batches, summed on the device."""
  widths = boundary.settings(config)[1]
  zeros = lambda: jax.device_put(
    steps.zero_counts(spec.num_classes, widths), sharding.replicated(mesh)
  )
  total, counts = steps.zero_counts(spec.num_classes, widths, np), zeros()
  flush = lambda total, counts: jax.tree.map(
    lambda t, c: t + np.asarray(jax.device_get(c), np.int64), total, counts
  )
  counted = 0  # Pixels in the int32 counts on the device, flushed before they could overflow.
  for batch in pipeline.eval_batches(config, spec, builder, plan):
    pixels = batch["label"].size * jax.process_count()
    if counted + pixels > _MAX_DEVICE_COUNT:
      total, counts, counted = flush(total, counts), zeros(), 0
    counts = counts_step(state, sharding.to_global(batch, mesh), counts)
    counted += pixels
  return flush(total, counts)


def _slid_confusion(
  state, tile_logits, plan, config, spec, builder, mesh, foreground, threshold, edges
):
  """`[C, C]` int64 counts of the images the plan slides over, tile batches on
  the device; their boundary counts go to `edges` (`boundary.Counter`)."""
  c = spec.num_classes
  crop = tuple(config.evaluation.crop_size) or tuple(config.crop_size)
  stride = tuple(config.evaluation.stride) or inference.default_stride(crop)
  tile_batch = pipeline.images_per_call(config, math.prod(crop), mesh)
  predict = _tile_predictor(lambda tiles: tile_logits(state, tiles), tile_batch, mesh)
  pad = preprocessing.from_config(config).pad
  decide = lambda band: inference.decide(band, foreground, threshold).astype(np.int32)
  split = config.data.eval_split or spec.eval_split
  decoded, _ = pipeline.decoded_split(config, spec, builder, split)
  total = np.zeros((c, c), np.int64)
  for index in plan.slide:  # Every process scores these (same data, same counts).
    example = decoded[index]
    predicted = inference.slide_map(
      predict, example["image"], decide, crop_size=crop, stride=stride, tile_batch=tile_batch,
      pad=pad,
    )  # fmt: skip
    label = example["label"]
    valid = label != spec.ignore_label
    total += np.bincount(label[valid] * c + predicted[valid], minlength=c * c).reshape(c, c)
    edges.add(label, predicted)
  return total


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


class Evaluator:
  """Evaluates a train state during training and reports it: the table, the
  pictures of `config.num_pictures` validation examples (the same ones every
  time), `metrics.json` and the scalars (process 0 writes).

  Attributes:
    plan: how the split is laid out (`pipeline.eval_plan`).
  """

  def __init__(self, config, spec, builder, mesh, eval_steps, decision, writer, workdir):
    self.config, self.spec, self.builder, self.mesh = config, spec, builder, mesh
    self.steps, self.writer, self.workdir = eval_steps, writer, workdir
    self.foreground, self.threshold = decision
    self.plan = pipeline.eval_plan(config, spec, builder, mesh)
    self.is_main = jax.process_index() == 0
    self.pictures = None
    if config.num_pictures:
      self.pictures = pipeline.eval_examples(config, spec, builder, config.num_pictures)
      self.shown = images.to_rgb(self.pictures["image"])  # Bands stretched once, as pictures.

  def __call__(self, state: TrainState, step: int) -> dict:
    """The metrics of `state` (`metrics.compute_metrics`) plus `step`, reported."""
    t0 = time.perf_counter()
    result = evaluate(
      state, self.steps, self.plan, self.config, self.spec, self.builder, self.mesh,
      self.foreground, self.threshold,
    )  # fmt: skip
    if self.pictures is not None:
      self._draw(state, step)
    if self.is_main:
      self._report(result, step, time.perf_counter() - t0)
    return {**result, "step": step}

  def _draw(self, state: TrainState, step: int) -> None:
    predicted = np.asarray(self.steps.labels(state, self.pictures["image"]))
    grid = pictures.prediction_grid(
      self.shown, self.pictures["label"], predicted, self.spec.palette, self.pictures["size"]
    )
    if self.is_main:
      files.save_image(Image.fromarray(grid), os.path.join(self.workdir, "predictions.png"))
      self.writer.image(step, "predictions", grid)

  def _report(self, result: dict, step: int, seconds: float) -> None:
    config, spec = self.config, self.spec
    tqdm.write(
      f"\nEvaluation at step {step} on {config.data.name}/"
      f"{config.data.eval_split or spec.eval_split} ({seconds:.1f}s):\n"
      + tables.format_table(result, spec.class_names)
    )
    record = writers.to_json(result, spec.class_names, step)
    writers.update_metrics_file(os.path.join(self.workdir, "metrics.json"), record)
    scalars = {f"eval/{k}": result[k] for k in ("miou", "macc", "aacc", "mdice", "mbiou")}
    scalars.update({f"eval_iou/{n}": v for n, v in record["iou"].items() if v is not None})
    self.writer.scalars(step, scalars)
