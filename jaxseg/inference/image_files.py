"""Image files in, label maps, overlays and cut-outs out (`jaxseg.predict`).

Each image, of any size and of the run's bands and sample type (as
`jaxseg.data.images` reads them), is labelled at its own resolution by one of
the modes (`inference.modes`) and written as `<name>.png` (palette label
map), `<name>_overlay.jpg` and, for a cut-out, `<name>_cutout.png` (RGBA,
background transparent). An unreadable file is reported and skipped.
"""

import dataclasses
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from jaxseg import errors, files
from jaxseg.data import images, preprocessing
from jaxseg.inference import forward, modes, outputs

BIG_IMAGE_PIXELS = 16 * 2**20  # Slide mode shows its progress on images this large.


@dataclasses.dataclass(frozen=True)
class Options:
  """How images are labelled and drawn.

  Attributes:
    mode: "whole" or "slide".
    crop_size, stride, tile_batch: the sliding window's tiles.
    scales, flip: test-time passes, averaged.
    alpha: opacity of the colours in the overlay.
    rgb_bands: bands shown as red, green, blue (None: the image's own RGB).
    background: the class a cut-out makes transparent (None: no cut-out).
    cutout_threshold: opaque where 1 - P(background) reaches it; 0: soft alpha.
    foreground, threshold: a binary run's decision (`forward.decision`).
  """

  mode: str = "whole"
  crop_size: tuple[int, int] = (512, 512)
  stride: tuple[int, int] = (341, 341)
  tile_batch: int = 8
  scales: tuple[float, ...] = (1.0,)
  flip: bool = False
  alpha: float = 0.5
  rgb_bands: tuple[int, ...] | None = None
  background: int | None = None
  cutout_threshold: float = 0.0
  foreground: int | None = None
  threshold: float = 0.5


def list_inputs(path: str) -> list[str]:
  """The image files of a folder (in name order), or the one file `path`."""
  if os.path.isdir(path):
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(images.EXTENSIONS))
    return [os.path.join(path, n) for n in names]
  if not os.path.exists(path):
    raise errors.MissingInput(f"--input={path} does not exist")
  return [path]


def predict_files(
  paths: Sequence[str],
  predict_fn: forward.PredictFn,
  norm: preprocessing.Normalization,
  spec,
  output: str,
  options: Options,
) -> list[str]:
  """Labels and writes every image of `paths` into `output`, one line each;
  returns the paths that failed (reported on stderr)."""
  os.makedirs(output, exist_ok=True)
  failed = []
  for path in paths:
    t0 = time.perf_counter()
    try:
      image = images.read_image(path)
      _check_fits_run(path, image, norm)
    except errors.UserError as e:
      failed.append(path)
      print(f"FAILED {e}", file=sys.stderr)
      continue
    stem = os.path.splitext(os.path.basename(path))[0]
    label = _write_outputs(image, label_image(predict_fn, image, norm, options, stem), spec,
                           os.path.join(output, stem), options)  # fmt: skip
    counts = np.bincount(label.ravel(), minlength=spec.num_classes)
    top = ", ".join(
      f"{spec.class_names[c]} {100 * counts[c] / label.size:.0f}%"
      for c in counts.argsort()[::-1][:3]
      if counts[c]
    )
    print(f"{path}: {image.shape[1]}x{image.shape[0]} in {time.perf_counter() - t0:.1f}s ({top})")
  return failed


def label_image(predict_fn, image: np.ndarray, norm, options: Options, name: str) -> np.ndarray:
  """`[H, W]` uint8 labels of one image, or `[H, W, 2]` labels and cut-out
  alpha when `options.background` is set."""

  def per_pixel(probs: np.ndarray) -> np.ndarray:
    label = forward.decide(probs, options.foreground, options.threshold).astype(np.uint8)
    if options.background is None:
      return label
    alpha = outputs.cutout_alpha(probs[..., options.background], options.cutout_threshold)
    return np.stack([label, alpha], -1)

  tiles = dict(crop_size=options.crop_size, stride=options.stride, tile_batch=options.tile_batch,
               pad=norm.pad)  # fmt: skip
  if options.mode == "slide" and options.scales == (1.0,) and not options.flip:
    # Rows done, for images that take a while; never more than a band of probabilities held.
    big = image.shape[0] * image.shape[1] >= BIG_IMAGE_PIXELS
    with tqdm(total=image.shape[0], unit="row", desc=name, disable=not big) as bar:
      return modes.slide_map(predict_fn, image, per_pixel, bar.update, **tiles)
  probs = modes.predict_probs(
    predict_fn, image, mode=options.mode, scales=options.scales, flip=options.flip, **tiles
  )
  return per_pixel(probs)


def _write_outputs(image, label, spec, stem: str, options: Options) -> np.ndarray:
  """Writes `stem.png`, `stem_overlay.jpg` (and `stem_cutout.png`); returns the labels."""
  shown = images.to_rgb(image, options.rgb_bands)
  if options.background is not None:
    label, alpha = label[..., 0], label[..., 1]
    files.save_image(Image.fromarray(np.dstack([shown, alpha]), mode="RGBA"), f"{stem}_cutout.png")
  outputs.save_label_png(label, spec.palette, f"{stem}.png")
  overlaid = outputs.overlay(shown, label, spec.palette, options.alpha)
  files.save_image(Image.fromarray(overlaid), f"{stem}_overlay.jpg", quality=90)
  return label


def _check_fits_run(path: str, image: np.ndarray, norm: preprocessing.Normalization) -> None:
  if image.shape[-1] != norm.channels or image.dtype != norm.dtype:
    raise errors.InvalidInput(
      f"{path}: {image.shape[-1]} bands of {image.dtype}; the run was trained on "
      f"{norm.channels} bands of {norm.dtype} (config.data.channels, dtype)"
    )
