"""What predictions become on disk: palette label PNGs (pixel values are class
indices, shown in the dataset's colours), colour overlays and cut-out alpha."""

import numpy as np
from PIL import Image

from jaxseg import files
from jaxseg.data import labels


def save_label_png(label: np.ndarray, palette: np.ndarray, path: str) -> None:
  """`[H, W]` class indices as a palette-indexed PNG (values stay the indices)."""
  image = Image.fromarray(label.astype(np.uint8), mode="P")
  flat = np.zeros((256, 3), np.uint8)
  flat[: len(palette)] = palette
  flat[labels.IGNORE_LABEL] = labels.IGNORE_COLOUR
  image.putpalette(flat.ravel().tolist())
  files.save_image(image, path)


def overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
  """Class colours blended over the image, a band of rows at a time (large
  images would otherwise need several float copies of themselves)."""
  out = np.empty_like(image)
  for row in range(0, len(image), 512):
    rows = slice(row, row + 512)
    colours = labels.colorize(label[rows], palette).astype(np.float32)
    out[rows] = (image[rows] * (1 - alpha) + colours * alpha).round().astype(np.uint8)
  return out


def cutout_alpha(background_prob: np.ndarray, threshold: float = 0.0) -> np.ndarray:
  """uint8 alpha from the background's probability: `255 (1 - p)`, or with a
  threshold > 0, 255 where `1 - p >= threshold` and 0 elsewhere."""
  foreground = 1.0 - background_prob
  if threshold > 0:
    return np.where(foreground >= threshold, 255, 0).astype(np.uint8)
  return np.clip(np.round(255 * foreground), 0, 255).astype(np.uint8)
