"""Pictures of results: image | ground truth | prediction grids, the confusion
matrix, learning curves, trimap curves."""

from collections.abc import Sequence

import numpy as np

from jaxseg.data import labels

SEPARATOR = 2  # Pixels of white between panels.


def prediction_grid(
  images: np.ndarray,
  truths: np.ndarray,
  predictions: np.ndarray,
  palette: np.ndarray,
  sizes: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
  """One row per example: the image, its ground truth and the prediction.

  Args:
    images: `[N, H, W, 3]` uint8.
    truths: `[N, H, W]` int labels (the ignore label is drawn white).
    predictions: `[N, H, W]` int predicted classes.
    palette: `[C, 3]` uint8 class colours.
    sizes: optional `[N, 2]` valid `(h, w)` of padded examples; padding is cut.

  Returns:
    `[rows, cols, 3]` uint8 picture.
  """
  n, h, w = truths.shape
  sizes = [(h, w)] * n if sizes is None else [tuple(int(v) for v in s) for s in sizes]
  row_h = max(s[0] for s in sizes)
  row_w = max(s[1] for s in sizes)
  grid = np.full(
    (n * (row_h + SEPARATOR) + SEPARATOR, 3 * (row_w + SEPARATOR) + SEPARATOR, 3), 255, np.uint8
  )
  for i, (hh, ww) in enumerate(sizes):
    panels = (
      images[i, :hh, :ww],
      labels.colorize(truths[i, :hh, :ww], palette),
      labels.colorize(predictions[i, :hh, :ww], palette),
    )
    y = SEPARATOR + i * (row_h + SEPARATOR)
    for j, panel in enumerate(panels):
      x = SEPARATOR + j * (row_w + SEPARATOR)
      grid[y : y + hh, x : x + ww] = panel
  return grid


def learning_curves(runs: dict[str, list[dict]], path: str, smooth: int = 5) -> None:
  """Training loss and validation mIoU against the step, one line per run.

  Args:
    runs: run name -> its `scalars.jsonl` records (`writers.read_scalars`);
      records with `train/loss` and `eval/miou` are drawn, later records of a
      step (a resumed run) replacing earlier ones.
    path: where the PNG goes.
    smooth: the loss is a running mean over this many logged points.
  """
  from matplotlib.figure import Figure  # No pyplot: no global state, no display.

  figure = Figure(figsize=(11, 4), dpi=100, layout="constrained")
  loss_axes, miou_axes = figure.subplots(1, 2)
  for name, records in runs.items():
    loss = _by_step(records, "train/loss")
    miou = _by_step(records, "eval/miou")
    if loss:
      steps, values = zip(*loss, strict=True)
      kernel = np.ones(min(smooth, len(values))) / min(smooth, len(values))
      smoothed = np.convolve(values, kernel, mode="valid")
      loss_axes.plot(steps[len(steps) - len(smoothed) :], smoothed, label=name)
    if miou:
      steps, values = zip(*miou, strict=True)
      miou_axes.plot(steps, 100 * np.asarray(values), marker="o", label=name)
  loss_axes.set(xlabel="step", ylabel="training loss", yscale="log", title="Training loss")
  miou_axes.set(xlabel="step", ylabel="mIoU (%)", title="Validation mIoU")
  for axes in (loss_axes, miou_axes):
    axes.grid(alpha=0.3)
    axes.legend()
  figure.savefig(path)


def trimap_curves(results: dict[str, dict], path: str) -> None:
  """mIoU and pixel accuracy within w pixels of a ground-truth edge against w
  (the trimap, `scoring.boundary`), one line per run; `results` are
  `writers.to_json` records with `trimap`."""
  from matplotlib.figure import Figure

  figure = Figure(figsize=(11, 4), dpi=100, layout="constrained")
  miou_axes, acc_axes = figure.subplots(1, 2)
  for name, record in results.items():
    widths = [band["width"] for band in record["trimap"]]
    for axes, key in ((miou_axes, "miou"), (acc_axes, "aacc")):
      values = [np.nan if b[key] is None else 100 * b[key] for b in record["trimap"]]
      axes.plot(widths, values, marker="o", label=f"{name} (whole image {100 * record[key]:.1f})")
  for axes, what in ((miou_axes, "mIoU"), (acc_axes, "pixel accuracy")):
    axes.set(
      xlabel="band: pixels from a ground-truth edge", ylabel=f"{what} (%)", xscale="log",
      title=f"Trimap: {what} near the edges",
    )  # fmt: skip
    axes.set_xticks(widths, [str(w) for w in widths])
    axes.grid(alpha=0.3)
    axes.legend()
  figure.savefig(path)


def _by_step(records: list[dict], key: str) -> list[tuple[int, float]]:
  values = {r["step"]: r[key] for r in records if key in r}
  return sorted(values.items())


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
