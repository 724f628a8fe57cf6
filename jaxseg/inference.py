"""The one forward pass, and inference at full resolution: whole image,
sliding window, multi-scale + flip.

`forward_logits` (uint8/uint16 images in, float32 logits out, preprocessing
included) is how a trained model runs everywhere: evaluation during training
and its pictures, `jaxseg.evaluate`/`predict`, exports and the benchmark.
Every mode maps one `[H, W, bands]` image to class probabilities at the
image's own resolution. The model runs through `predict_fn`, a function of a
batch `[N, h, w, bands]` returning float32 logits `[N, h, w, C]`
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

import math
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import errors
from jaxseg.data import images as images_lib
from jaxseg.models import preprocessing

PredictFn = Callable[[np.ndarray], np.ndarray]
# Exports pad images inside the graph to a multiple of this (the largest
# output stride of the zoo), so that any height and width runs.
EXPORT_SIZE_MULTIPLE = 32


def forward_logits(
  model, variables, images: jax.Array, norm: preprocessing.Normalization = preprocessing.IMAGENET
) -> jax.Array:
  """The model's float32 logits `[N, h, w, C]` for a batch `[N, h, w, bands]`
  standardised by `norm` (the run's: `preprocessing.from_config`).

  The one forward pass of a trained model: evaluation during training, its
  pictures, `jaxseg.evaluate`/`predict`, exports and the benchmark all run it.
  """
  out = model.apply(variables, preprocessing.normalize(images, norm), train=False)["logits"]
  return out.astype(jnp.float32)


def padded_forward(model, variables, norm: preprocessing.Normalization):
  """The exported function: `images [N, h, w, bands] -> logits [N, h, w, C]`
  for any h, w (symbolic ones included), padded to a multiple of
  EXPORT_SIZE_MULTIPLE with `norm.pad` inside (by concatenation, which
  symbolic shapes allow), logits sliced back."""
  m = EXPORT_SIZE_MULTIPLE

  def serve(images):
    n, h, w, c = images.shape
    height, width = m * ((h + m - 1) // m), m * ((w + m - 1) // m)
    pad = jnp.asarray(norm.pad, images.dtype)
    x = jnp.concatenate([images, jnp.broadcast_to(pad, (n, height - h, w, c))], axis=1)
    x = jnp.concatenate([x, jnp.broadcast_to(pad, (n, height, width - w, c))], axis=2)
    logits = forward_logits(model, variables, x, norm)
    return jax.lax.slice(logits, (0, 0, 0, 0), (n, h, w, logits.shape[-1]))

  return serve


def export_any_size(name: str, export_fn, norm: preprocessing.Normalization, size):
  """`export_fn(spec)` for images with symbolic batch, height and width; if
  the network needs fixed shapes (tracing fails), for the tile `size` with a
  symbolic batch, said so. Returns the result and whether height and width
  are symbolic."""
  dtype = jnp.dtype(norm.dtype)
  try:
    b, h, w = jax.export.symbolic_shape("batch, height, width")
    return export_fn(jax.ShapeDtypeStruct((b, h, w, norm.channels), dtype)), True
  except Exception as e:  # Any tracing failure: the network needs fixed shapes.
    print(f"{name}: height and width fixed at {tuple(size)} ({type(e).__name__})")
    (b,) = jax.export.symbolic_shape("batch")
    return export_fn(jax.ShapeDtypeStruct((b, *size, norm.channels), dtype)), False


def decision(config, class_names: Sequence[str]) -> tuple[int | None, float]:
  """`(foreground, threshold)` for `decide` from a run's config: the index of
  the class `config.binary.foreground` names, None for a multiclass run.

  Raises:
    ValueError naming the key if the dataset does not have exactly two
    classes, one of them that name, or the threshold is not in (0, 1).
  """
  binary = config.get("binary") or {}  # Runs from before binary mode have none.
  name, threshold = binary.get("foreground", ""), binary.get("threshold", 0.5)
  if not name:
    return None, 0.5
  if len(class_names) != 2 or name not in class_names:
    raise errors.InvalidInput(
      f"config.binary.foreground={name!r}: binary mode needs a two-class dataset with that "
      f"class; this one has {list(class_names)}"
    )
  if not 0 < threshold < 1:
    raise errors.InvalidInput(f"config.binary.threshold={threshold!r} must be between 0 and 1")
  return list(class_names).index(name), float(threshold)


def decide(probs, foreground: int | None = None, threshold: float = 0.5):
  """Class labels from probabilities `[..., C]` (numpy or jax): the argmax, or
  in a binary run the foreground where its probability is >= `threshold`."""
  if foreground is None:
    return probs.argmax(-1)
  xp = jnp if isinstance(probs, jax.Array) else np
  return xp.where(probs[..., foreground] >= threshold, foreground, 1 - foreground)


def decide_logits(logits: jax.Array, foreground: int | None = None, threshold: float = 0.5):
  """`decide` on logits `[..., C]` (on the device): the argmax, or in a binary
  run the foreground where `logit_fg - logit_bg >= log(t / (1 - t))`, which
  is its softmax probability reaching `t`."""
  if foreground is None:
    return jnp.argmax(logits, -1)
  margin = logits[..., foreground] - logits[..., 1 - foreground]
  return jnp.where(margin >= math.log(threshold / (1 - threshold)), foreground, 1 - foreground)


def make_predict_fn(
  model, variables, norm: preprocessing.Normalization = preprocessing.IMAGENET
) -> PredictFn:
  """A jitted `[N, h, w, bands] -> float32 [N, h, w, C]` logits function.

  The variables go to the device once and into the compiled function as an
  argument, not as constants baked into it.
  """
  variables = jax.device_put(variables)
  run = jax.jit(lambda variables, images: forward_logits(model, variables, images, norm))
  return lambda images: np.asarray(run(variables, jnp.asarray(images)))


def make_label_fn(
  model,
  variables,
  size_multiple: int = 32,
  foreground: int | None = None,
  threshold: float = 0.5,
  norm: preprocessing.Normalization = preprocessing.IMAGENET,
) -> Callable[[np.ndarray], np.ndarray]:
  """A jitted `uint8 [N, h, w, 3] -> uint8 [N, h, w]` class-label function
  (video frames): the decision (`decide`) runs on the device, so only labels
  come back. Frames are padded up to a multiple of `size_multiple`, labels
  cropped back."""
  variables = jax.device_put(variables)

  def run(variables, images):
    logits = forward_logits(model, variables, images, norm)
    return decide_logits(logits, foreground, threshold).astype(jnp.uint8)

  run = jax.jit(run)
  m = max(1, size_multiple)

  def labels(images: np.ndarray) -> np.ndarray:
    n, h, w, _ = images.shape
    height, width = -(-h // m) * m, -(-w // m) * m
    if (height, width) != (h, w):
      padded = np.empty((n, height, width, images.shape[-1]), images.dtype)
      padded[...] = norm.pad
      padded[:, :h, :w] = images
      images = padded
    return np.asarray(run(variables, jnp.asarray(images)))[:, :h, :w]

  return labels


def _pad_to(image: np.ndarray, height: int, width: int, pad=None) -> np.ndarray:
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
  padded = _pad_to(image, -(-h // m) * m, -(-w // m) * m, pad)
  return _softmax(np.array(predict_fn(padded[None])[0, :h, :w], np.float32))


def whole_batch(
  predict_fn: PredictFn, images: Sequence[np.ndarray], size_multiple: int = 32, pad=None
) -> list[np.ndarray]:
  """`whole` for several images at once: all padded to one shape (the largest,
  rounded up to a multiple of `size_multiple`), run as one batch, each cropped back."""
  m = max(1, size_multiple)
  height = -(-max(im.shape[0] for im in images) // m) * m
  width = -(-max(im.shape[1] for im in images) // m) * m
  logits = predict_fn(np.stack([_pad_to(im, height, width, pad) for im in images]))
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
  padded = _pad_to(image, max(h, ch), max(w, cw), pad)
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
