"""What the builders of real datasets share: their features and label reading."""

import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg import errors


def segmentation_features(
  image_encoding: str, bands: int = 3, dtype=np.uint8
) -> tfds.features.FeaturesDict:
  """`image`, `segmentation_mask` (one-channel PNG of class values) and
  `file_name` (the example's source, for error messages and predictions).

  The image is an RGB PNG or JPEG, or (other bands or sample types) a
  zlib-compressed `[H, W, bands]` array.
  """
  if bands == 3 and np.dtype(dtype) == np.uint8:
    image = tfds.features.Image(shape=(None, None, 3), encoding_format=image_encoding)
  else:
    image = tfds.features.Tensor(shape=(None, None, bands), dtype=dtype, encoding="zlib")
  return tfds.features.FeaturesDict(
    {
      "image": image,
      "segmentation_mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
      "file_name": tfds.features.Text(),
    }
  )


def read_index_png(path: str) -> np.ndarray:
  """A palette-indexed (or greyscale) label PNG as its `[H, W]` uint8 indices."""
  if not os.path.exists(path):
    raise errors.MissingInput(f"label file {path} is missing")
  try:
    with Image.open(path) as im:
      if im.mode not in ("P", "L"):
        raise errors.InvalidInput(
          f"{path}: label PNG has mode {im.mode!r}; expected palette-indexed ('P') or "
          "greyscale ('L') class indices, not colours"
        )
      return np.asarray(im, np.uint8)
  except OSError as e:
    raise errors.InvalidInput(f"{path}: unreadable label image ({e})") from e
