"""Pictures of predictions: image | ground truth | prediction grids."""

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
