"""Image files in, `[H, W, bands]` arrays out; and any image back to RGB for pictures.

One reader for every place a user's image enters jaxseg (folder datasets,
`jaxseg.predict`, `jaxseg.evaluate` through the dataset), so they accept the
same files:

| file | read with | gives |
|---|---|---|
| `.png`, `.jpg`, `.jpeg` (8-bit, any mode) | Pillow | uint8 RGB, 3 bands |
| `.png` 16-bit (greyscale or colour) | imagecodecs | uint16, 1 or 3 bands |
| `.tif`, `.tiff` (GeoTIFF too; any compression) | tifffile | uint8 or uint16, N bands |
| `.npy` (`[H, W]` or `[H, W, N]`) | NumPy | uint8 or uint16, N bands |

Planar TIFFs (bands first) are turned to bands last. Pillow's decompression-bomb
limit (~179 MP) is lifted while reading: these are the user's own files, and
aerial or slide scans are often larger. Other sample types (signed, float)
are refused with the file named: convert them to uint16 (e.g. reflectance × 10,000).
"""

import os

import numpy as np
from PIL import Image

from jaxseg import errors

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")
DTYPES = (np.uint8, np.uint16)
# Percentiles of each shown band stretched to 0..255 in pictures of non-RGB images.
STRETCH_PERCENTILES = (2.0, 98.0)


def read_image(path: str) -> np.ndarray:
  """The image file at `path` as `[H, W, bands]` uint8 or uint16.

  Raises:
    MissingInput if there is no file; InvalidInput naming the file if it is
    not an image these readers know or holds another sample type.
  """
  if not os.path.exists(path):
    raise errors.MissingInput(f"{path}: no such file")
  ext = os.path.splitext(path)[1].lower()
  if ext not in EXTENSIONS:
    raise errors.InvalidInput(f"{path}: not an image jaxseg reads ({', '.join(EXTENSIONS)})")
  try:
    if ext in (".tif", ".tiff"):
      image = _read_tiff(path)
    elif ext == ".npy":
      image = np.load(path, allow_pickle=False)
    else:
      image = _read_png_or_jpeg(path)
  except (OSError, ValueError) as e:
    if isinstance(e, errors.UserError):
      raise
    raise errors.InvalidInput(f"{path}: unreadable image ({e})") from e
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
    raise errors.InvalidInput(
      f"{path}: an image must be [H, W] or [H, W, bands], got {image.shape}"
    )
  if image.dtype not in DTYPES:
    raise errors.InvalidInput(
      f"{path}: samples are {image.dtype}; jaxseg reads uint8 or uint16 images "
      "(scale and convert others, e.g. reflectance x 10000 as uint16)"
    )
  return np.ascontiguousarray(image)


def _read_png_or_jpeg(path: str) -> np.ndarray:
  limit = Image.MAX_IMAGE_PIXELS
  Image.MAX_IMAGE_PIXELS = None  # The user's own file: no decompression-bomb guard.
  try:
    with Image.open(path) as im:
      if im.format == "PNG" and _png_bit_depth(path) == 16:
        import imagecodecs  # Pillow reads 16-bit colour PNGs as 8-bit.

        with open(path, "rb") as f:
          return imagecodecs.png_decode(f.read())
      # Already RGB: no converted copy (a 20,000² image is 1.2 GB).
      return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
  finally:
    Image.MAX_IMAGE_PIXELS = limit


def _png_bit_depth(path: str) -> int:
  with open(path, "rb") as f:
    header = f.read(25)  # Signature, IHDR length and type, width, height, bit depth.
  return header[24] if len(header) == 25 else 8


def _read_tiff(path: str) -> np.ndarray:
  import tifffile

  with tifffile.TiffFile(path) as tif:
    if not tif.series:
      raise errors.InvalidInput(f"{path}: unreadable image (no image in the TIFF)")
    series = tif.series[0]
    image = series.asarray()
    axes = series.axes
  # Bands first ("CYX", "SYX", planar storage) -> bands last.
  if image.ndim == 3 and axes[-2:] == "YX":
    image = np.moveaxis(image, 0, -1)
  elif image.ndim > 3:
    raise errors.InvalidInput(
      f"{path}: a TIFF with axes {axes!r} {image.shape}; jaxseg reads one 2-D image "
      "with bands (YX, YXS or SYX)"
    )
  return image


def to_rgb(image: np.ndarray, bands: tuple[int, ...] | None = None) -> np.ndarray:
  """`[..., H, W, N]` uint8/uint16 -> uint8 RGB for pictures.

  uint8 RGB images are returned as they are. Otherwise the `bands` shown as
  red, green and blue (default the first three, or the one band as grey) are
  each stretched between their 2nd and 98th percentiles, as GIS viewers do.
  """
  n = image.shape[-1]
  if bands is None:
    if n == 3 and image.dtype == np.uint8:
      return image
    bands = (0, 1, 2) if n >= 3 else (0, 0, 0)
  bands = tuple(bands)
  if len(bands) == 1:
    bands = bands * 3
  if len(bands) != 3 or not all(0 <= b < n for b in bands):
    raise errors.InvalidInput(
      f"rgb_bands={bands} must be three (or one) band indices of the image's {n} bands"
    )
  shown = image[..., list(bands)].astype(np.float32)
  low, high = np.percentile(shown.reshape(-1, 3), STRETCH_PERCENTILES, axis=0)
  scaled = (shown - low) / np.maximum(high - low, 1e-6)
  return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of any bands and dtype (band by band through Pillow's float mode)."""
  if image.shape[:2] == (height, width):
    return image
  if image.dtype == np.uint8 and image.shape[-1] == 3:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
  out = np.empty((height, width, image.shape[-1]), image.dtype)
  top = np.iinfo(image.dtype).max
  for b in range(image.shape[-1]):
    band = Image.fromarray(image[..., b].astype(np.float32), mode="F")
    band = np.asarray(band.resize((width, height), Image.BILINEAR))
    out[..., b] = np.clip(np.round(band), 0, top)
  return out
