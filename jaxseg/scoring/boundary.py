"""Boundary quality: Boundary IoU (Cheng et al. 2021) and trimap scores.

Both are sums over a split, like the confusion matrix, so they are counted
per batch (on the device) or per image (on the host) and scored once:

- **Boundary IoU** of class c: the pixels of its ground-truth mask within `d`
  pixels of the mask's contour (the mask minus its erosion by a (2d+1)²
  square, the image border counting as contour, as the paper's code pads
  with background), the same band of its predicted mask, and the
  intersection over union of the two bands summed over the split. `d` is 2%
  of each image's diagonal (at least 1) unless given in pixels.
- **Trimap** (Kohli et al. 2009, as DeepLab reports it): the confusion matrix
  of the pixels within `w` pixels (a (2w+1)² square) of a ground-truth
  boundary, a pixel whose right or lower neighbour has another label (the
  ignore label counts as one: VOC's void band), for a sweep of widths; pixel
  accuracy and mIoU in each band.

Ignored pixels are in neither mask and never counted. Erosion and dilation
are box sums from cumulative sums: exact integers, any `d` at the same cost.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.scoring import metrics

TRIMAP_WIDTHS = (1, 2, 4, 8, 16, 32)
DIAGONAL_RATIO = 0.02


def boundary_width(height, width, ratio: float = DIAGONAL_RATIO, xp=np):
  """The paper's band width: `ratio` of the image diagonal, rounded, >= 1
  (`xp=jnp` for traced sizes)."""
  diagonal = xp.sqrt(xp.square(height * 1.0) + xp.square(width * 1.0))
  return xp.maximum(1, xp.round(ratio * diagonal)).astype(xp.int32)


# ---- on the host, one image at a time (`jaxseg.evaluate`) ----


def _box_sums(mask: np.ndarray, d: int) -> np.ndarray:
  """Sums of `mask` over the (2d+1)² square at each pixel, zero outside."""
  padded = np.pad(mask.astype(np.int64), d + 1)[:-1, :-1]
  integral = padded.cumsum(0).cumsum(1)  # integral[i, j] = sum of padded[:i, :j] shifted
  k = 2 * d + 1
  h, w = mask.shape
  return (
    integral[k : k + h, k : k + w]
    - integral[:h, k : k + w]
    - integral[k : k + h, :w]
    + integral[:h, :w]
  )


def boundary_counts_image(
  label: np.ndarray, prediction: np.ndarray, num_classes: int, ignore_label: int, d: int | None
) -> np.ndarray:
  """`[C, 2]` int64: per class, the intersection and the union of the
  boundary bands of one image's truth and prediction (`d` None: the paper's)."""
  d = int(boundary_width(*label.shape)) if d is None else d
  valid = label != ignore_label
  counts = np.zeros((num_classes, 2), np.int64)
  full = (2 * d + 1) ** 2
  for c in np.union1d(np.unique(label[valid]), np.unique(prediction[valid])):
    bands = []
    for mask in (valid & (label == c), valid & (prediction == c)):
      bands.append(mask & (_box_sums(mask, d) < full))
    counts[c] = (np.sum(bands[0] & bands[1]), np.sum(bands[0] | bands[1]))
  return counts


def truth_boundary(label: np.ndarray) -> np.ndarray:
  """Pixels whose right or lower neighbour has another label, and those
  neighbours: both sides of every edge between labels."""
  edge = np.zeros(label.shape, bool)
  across = label[:, 1:] != label[:, :-1]
  down = label[1:, :] != label[:-1, :]
  edge[:, 1:] |= across
  edge[:, :-1] |= across
  edge[1:, :] |= down
  edge[:-1, :] |= down
  return edge


def trimap_confusion_image(
  label: np.ndarray, prediction: np.ndarray, num_classes: int, ignore_label: int, widths
) -> np.ndarray:
  """`[len(widths), C, C]` int64: the confusion matrix of the pixels within
  each width of a ground-truth boundary."""
  edge = truth_boundary(label)
  valid = label != ignore_label
  out = np.zeros((len(widths), num_classes * num_classes), np.int64)
  for i, w in enumerate(widths):
    band = valid & (_box_sums(edge, w) > 0)
    index = label[band].astype(np.int64) * num_classes + prediction[band]
    out[i] = np.bincount(index, minlength=num_classes * num_classes)
  return out.reshape(len(widths), num_classes, num_classes)


# ---- on the device, a padded batch at a time (evaluation during training) ----


def _box_sums_batch(mask: jax.Array, d: jax.Array) -> jax.Array:
  """`_box_sums` of `[N, H, W]` int32 masks with a width per image `d` `[N]`."""

  def along(x, axis):
    n = x.shape[axis]
    zeros = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
    cumulative = jnp.concatenate([zeros, jnp.cumsum(x, axis=axis)], axis=axis)
    i = jnp.arange(n)[None, :]
    shape = [x.shape[0], 1, 1]
    shape[axis] = n
    high = jnp.clip(i + d[:, None] + 1, 0, n).reshape(shape)
    low = jnp.clip(i - d[:, None], 0, n).reshape(shape)
    take = lambda index: jnp.take_along_axis(
      cumulative, jnp.broadcast_to(index, x.shape), axis=axis
    )
    return take(high) - take(low)

  return along(along(mask, 1), 2)


def boundary_counts(
  label: jax.Array, prediction: jax.Array, valid: jax.Array, num_classes: int, d: jax.Array
) -> jax.Array:
  """`[C, 2]` int32 of a batch: `boundary_counts_image` summed, `valid`
  `[N, H, W]` marking the pixels scored (padding and ignore excluded), `d`
  `[N]` each image's band width."""
  full = jnp.square(2 * d + 1)[:, None, None]

  def one_class(c):
    bands = []
    for mask in (valid & (label == c), valid & (prediction == c)):
      bands.append(mask & (_box_sums_batch(mask.astype(jnp.int32), d) < full))
    inter = jnp.sum(bands[0] & bands[1], dtype=jnp.int32)
    return jnp.stack([inter, jnp.sum(bands[0] | bands[1], dtype=jnp.int32)])

  return jax.lax.map(one_class, jnp.arange(num_classes))


def trimap_confusion(
  label: jax.Array, prediction: jax.Array, valid: jax.Array, inside: jax.Array, num_classes: int,
  widths=TRIMAP_WIDTHS,
) -> jax.Array:  # fmt: skip
  """`[len(widths), C, C]` int32 of a batch: `trimap_confusion_image` summed;
  `inside` `[N, H, W]` marks each image's own pixels, so padding makes no edge."""
  across = (label[:, :, 1:] != label[:, :, :-1]) & inside[:, :, 1:] & inside[:, :, :-1]
  down = (label[:, 1:, :] != label[:, :-1, :]) & inside[:, 1:, :] & inside[:, :-1, :]
  pad = lambda x, spec: jnp.pad(x, ((0, 0), *spec))
  edge = (
    pad(across, ((0, 0), (1, 0))) | pad(across, ((0, 0), (0, 1)))
    | pad(down, ((1, 0), (0, 0))) | pad(down, ((0, 1), (0, 0)))
  )  # fmt: skip
  edge = edge.astype(jnp.int32)
  out = []
  for w in widths:
    d = jnp.full((label.shape[0],), w, jnp.int32)
    band = valid & (_box_sums_batch(edge, d) > 0)
    out.append(metrics.confusion_matrix(label, prediction, num_classes, band))
  return jnp.stack(out)


def batch_counts(
  label: jax.Array, prediction: jax.Array, valid: jax.Array, size: jax.Array, num_classes: int,
  d: int | None = None, widths=TRIMAP_WIDTHS,
) -> dict[str, jax.Array]:  # fmt: skip
  """`boundary_counts` and `trimap_confusion` of a padded batch whose images'
  own sizes are `size` `[N, 2]` (`d` None: 2% of each one's diagonal)."""
  rows = jnp.arange(label.shape[1])[None, :, None] < size[:, 0, None, None]
  inside = rows & (jnp.arange(label.shape[2])[None, None, :] < size[:, 1, None, None])
  if d is None:
    widths_d = boundary_width(size[:, 0], size[:, 1], xp=jnp)
  else:
    widths_d = jnp.full(label.shape[:1], d, jnp.int32)
  return {
    "boundary": boundary_counts(label, prediction, valid, num_classes, widths_d),
    "trimap": trimap_confusion(label, prediction, valid, inside, num_classes, widths),
  }


# ---- scores ----


def settings(config) -> tuple[int | None, tuple[int, ...]]:
  """`(d, trimap widths)` of `config.evaluation` (d None: 2% of the diagonal);
  the defaults for a run whose config predates them."""
  evaluation = config.get("evaluation") or {}
  d = int(evaluation.get("boundary_width", 0)) or None
  return d, tuple(evaluation.get("trimap_widths", TRIMAP_WIDTHS))


class Counter:
  """Boundary IoU and trimap counts over images scored one at a time."""

  def __init__(self, config, spec):
    self.d, self.widths = settings(config)
    self.num_classes, self.ignore_label = spec.num_classes, spec.ignore_label
    self.boundary = np.zeros((self.num_classes, 2), np.int64)
    self.trimap = np.zeros((len(self.widths), self.num_classes, self.num_classes), np.int64)

  def add_counts(self, counts: dict) -> None:
    """Adds `batch_counts` summed elsewhere (on the device)."""
    self.boundary += counts["boundary"]
    self.trimap += counts["trimap"]

  def add(self, label: np.ndarray, prediction: np.ndarray) -> None:
    args = (label, prediction, self.num_classes, self.ignore_label)
    self.boundary += boundary_counts_image(*args, self.d)
    self.trimap += trimap_confusion_image(*args, self.widths)

  def scores(self) -> dict:
    """`boundary_scores`, `trimap_scores` and `boundary_width` (pixels, or
    "2% of the diagonal")."""
    width = self.d if self.d else f"{100 * DIAGONAL_RATIO:g}% of the diagonal"
    return {
      **boundary_scores(self.boundary),
      **trimap_scores(self.trimap, self.widths),
      "boundary_width": width,
    }


def boundary_scores(counts: np.ndarray) -> dict:
  """`biou` `[C]` (NaN where a class has no band in truth or prediction) and
  `mbiou`, their mean over the classes that have one."""
  counts = np.asarray(counts, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    biou = np.where(counts[:, 1] > 0, counts[:, 0] / counts[:, 1], np.nan)
  mean = float(np.nanmean(biou)) if np.any(~np.isnan(biou)) else float("nan")
  return {"biou": biou, "mbiou": mean}


def trimap_scores(confusions: np.ndarray, widths=TRIMAP_WIDTHS) -> dict:
  """Per width: pixel accuracy and mIoU in the band (`metrics.compute_metrics`)."""
  rows = []
  for w, confusion in zip(widths, np.asarray(confusions), strict=True):
    scored = metrics.compute_metrics(confusion)
    rows.append({"width": int(w), "aacc": scored["aacc"], "miou": scored["miou"]})
  return {"trimap": rows}
