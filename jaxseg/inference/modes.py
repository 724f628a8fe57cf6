"""Inference at full resolution: whole image, sliding window, multi-scale + flip.

Every mode maps one `[H, W, bands]` image to class probabilities at the
image's own resolution, running the model through a `forward.PredictFn`
(`make_predict_fn` builds a jitted one; it compiles once per input shape, so
`whole` pads images up to a multiple of `size_multiple` to bound how many
shapes there are).

`slide` runs overlapping tiles in batches and averages the logits of the
tiles covering each pixel (as mmsegmentation does). It works through the image
a row of tiles at a time and hands finished rows to a callback, so its memory
is bounded by a band of tiles, not by the image: an 8192×8192 image runs on a
laptop CPU.

Images are padded with `pad`, the per-band value that standardises to 0
(`preprocessing.Normalization.pad`; ImageNet's mean colour by default).
"""

from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import errors
from jaxseg.data import images as images_lib
from jaxseg.data import preprocessing
from jaxseg.inference.forward import PredictFn


def pad_to(image: np.ndarray, height: int, width: int, pad=None) -> np.ndarray:
  """`[H, W, bands]` padded at the bottom and right to `height, width` with `pad`
  (ImageNet's mean colour by default)."""
  h, w = image.shape[:2]
  if (h, w) == (height, width):
    return image
  out = np.empty((height, width, image.shape[-1]), image.dtype)
  out[...] = preprocessing.PAD_COLOUR if pad is None else pad
  out[:h, :w] = image
  return out


def whole(
  predict_fn: PredictFn, image: np.ndarray, size_multiple: int = 32, pad=None
) -> np.ndarray:
  """The image at its own size, padded up to a multiple of `size_multiple`
  (bounding the number of compiled shapes), probabilities cropped back."""
  h, w = image.shape[:2]
  m = max(1, size_multiple)
  padded = pad_to(image, -(-h // m) * m, -(-w // m) * m, pad)
  return _softmax(np.array(predict_fn(padded[None])[0, :h, :w], np.float32))


def whole_batch(
  predict_fn: PredictFn, images: Sequence[np.ndarray], size_multiple: int = 32, pad=None
) -> list[np.ndarray]:
  """`whole` for several images at once: all padded to one shape (the largest,
  rounded up to a multiple of `size_multiple`), run as one batch, each cropped back."""
  m = max(1, size_multiple)
  height = -(-max(im.shape[0] for im in images) // m) * m
  width = -(-max(im.shape[1] for im in images) // m) * m
  logits = predict_fn(np.stack([pad_to(im, height, width, pad) for im in images]))
  return [
    _softmax(np.array(out[: im.shape[0], : im.shape[1]], np.float32))
    for out, im in zip(logits, images, strict=True)
  ]


def default_stride(crop_size: Sequence[int]) -> tuple[int, ...]:
  """Two thirds of the tile, mmsegmentation's usual overlap (512 -> 341)."""
  return tuple(max(1, 2 * c // 3) for c in crop_size)


def tile_starts(size: int, crop: int, stride: int) -> list[int]:
  """Offsets of the tiles along one axis: every `stride`, the last one flush
  with the end (mmsegmentation's grid); `[0]` when the crop covers it all."""
  if size <= crop:
    return [0]
  count = -(-(size - crop) // stride) + 1
  return [min(i * stride, size - crop) for i in range(count)]


def slide_bands(
  predict_fn: PredictFn,
  image: np.ndarray,
  *,
  crop_size: Sequence[int],
  stride: Sequence[int],
  tile_batch: int = 8,
  pad=None,
) -> Iterator[tuple[int, np.ndarray]]:
  """Sliding-window probabilities, yielded as finished horizontal bands.

  Yields:
    `(row, probs)`: probabilities `[rows, W, C]` of image rows
    `row .. row + rows`; bands arrive in order and cover the image once.
  """
  h, w = image.shape[:2]
  ch, cw = crop_size
  sh, sw = stride
  if sh <= 0 or sw <= 0 or sh > ch or sw > cw:
    raise errors.InvalidInput(
      f"slide stride {tuple(stride)} must be in 1..crop size {tuple(crop_size)}"
    )
  # Images smaller than a tile are padded up to it (and cropped back).
  padded = pad_to(image, max(h, ch), max(w, cw), pad)
  ph, pw = padded.shape[:2]
  ch, cw = min(ch, ph), min(cw, pw)
  ys, xs = tile_starts(ph, ch, sh), tile_starts(pw, cw, sw)
  logits_sum = None  # [rows, pw, C] for rows base .. base + len.
  counts = np.zeros((0, pw), np.float32)
  base = 0
  for r, y in enumerate(ys):
    need = y + ch - base
    if need > len(counts):  # Grow the band downwards.
      grow = need - len(counts)
      counts = np.concatenate([counts, np.zeros((grow, pw), np.float32)])
      if logits_sum is not None:
        zeros = np.zeros((grow, *logits_sum.shape[1:]), np.float32)
        logits_sum = np.concatenate([logits_sum, zeros])
    # Each batch of tiles is added as it comes back: only one batch of tile
    # logits exists at a time, not a whole row of them.
    for i in range(0, len(xs), tile_batch):
      chunk = xs[i : i + tile_batch]
      outs = predict_fn(np.stack([padded[y : y + ch, x : x + cw] for x in chunk]))
      if logits_sum is None:
        logits_sum = np.zeros((len(counts), pw, outs.shape[-1]), np.float32)
      for x, out in zip(chunk, outs, strict=True):
        logits_sum[y - base : y - base + ch, x : x + cw] += out
        counts[y - base : y - base + ch, x : x + cw] += 1
    done = ys[r + 1] if r + 1 < len(ys) else ph  # No later tile touches rows above this.
    done = min(done, h)
    if done > base:
      yield base, _softmax(logits_sum[: done - base, :w] / counts[: done - base, :w, None])
      logits_sum, counts = logits_sum[done - base :], counts[done - base :]
      base = done


def _softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis, in place (`logits` must be a fresh array)."""
  logits -= logits.max(-1, keepdims=True)
  np.exp(logits, out=logits)
  logits /= logits.sum(-1, keepdims=True)
  return logits


def slide(predict_fn: PredictFn, image: np.ndarray, **kw) -> np.ndarray:
  """`slide_bands` assembled into full `[H, W, C]` probabilities."""
  return np.concatenate([band for _, band in slide_bands(predict_fn, image, **kw)])


def slide_map(
  predict_fn: PredictFn,
  image: np.ndarray,
  per_pixel: Callable[[np.ndarray], np.ndarray],
  progress: Callable[[int], object] | None = None,
  **kw,
) -> np.ndarray:
  """`per_pixel` (probabilities `[rows, W, C]` -> `[rows, W, ...]`) of `slide`'s
  probabilities, band by band: never more than a band of probabilities held.
  `progress(rows)` is called as each band of rows is done."""
  out = None
  for row, band in slide_bands(predict_fn, image, **kw):
    values = per_pixel(band)
    if out is None:
      out = np.empty((*image.shape[:2], *values.shape[2:]), values.dtype)
    out[row : row + len(band)] = values
    if progress is not None:
      progress(len(band))
  return out


def slide_labels(predict_fn: PredictFn, image: np.ndarray, **kw) -> np.ndarray:
  """`[H, W]` uint8 argmax of `slide`, never holding more than a band of probabilities."""
  return slide_map(predict_fn, image, lambda band: band.argmax(-1).astype(np.uint8), **kw)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
  return images_lib.resize(image, height, width)


def resize_probs(probs: np.ndarray, height: int, width: int) -> np.ndarray:
  if probs.shape[:2] == (height, width):
    return probs
  shape = (height, width, probs.shape[-1])
  return np.asarray(jax.image.resize(jnp.asarray(probs), shape, "linear"))


def predict_probs(
  predict_fn: PredictFn,
  image: np.ndarray,
  *,
  mode: str = "whole",
  scales: Sequence[float] = (1.0,),
  flip: bool = False,
  size_multiple: int = 32,
  crop_size: Sequence[int] = (512, 512),
  stride: Sequence[int] = (341, 341),
  tile_batch: int = 8,
  pad=None,
) -> np.ndarray:
  """Probabilities `[H, W, C]` of one image, averaged over scales and flips.

  Args:
    predict_fn: see `make_predict_fn`.
    image: `[H, W, bands]`.
    mode: "whole" or "slide".
    scales: resize ratios; each pass's probabilities are resized back to `H, W`.
    flip: also run every scale mirrored (and mirror the result back).
    size_multiple: `whole` pads to a multiple of this.
    crop_size, stride, tile_batch: `slide`'s tiles.
    pad: per-band padding value (`Normalization.pad`); None: ImageNet's mean colour.
  """
  if mode not in ("whole", "slide"):
    raise errors.InvalidInput(f"mode must be 'whole' or 'slide', not {mode!r}")
  h, w = image.shape[:2]
  total = None
  for scale in scales:
    scaled = resize_image(image, max(1, round(h * scale)), max(1, round(w * scale)))
    for mirrored in (False, True) if flip else (False,):
      x = scaled[:, ::-1] if mirrored else scaled
      if mode == "whole":
        probs = whole(predict_fn, np.ascontiguousarray(x), size_multiple, pad)
      else:
        probs = slide(
          predict_fn, np.ascontiguousarray(x), crop_size=crop_size, stride=stride,
          tile_batch=tile_batch, pad=pad,
        )  # fmt: skip
      probs = resize_probs(probs[:, ::-1] if mirrored else probs, h, w)
      total = probs if total is None else total + probs
  return total / (len(scales) * (2 if flip else 1))
