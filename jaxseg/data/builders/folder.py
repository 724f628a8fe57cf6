"""`folder`: a user's own images and masks, built into ArrayRecord by TFDS.

    DIR/
      classes.json       {"classes": ["background", "road", ...],
                          "palette": [[0, 0, 0], [128, 64, 128], ...],   (optional)
                          "label_map": {"255": 1},                        (optional)
                          "ignore_label": 255}                            (optional)
      images/            NAME.png or .jpg (8-bit, any mode; converted to RGB), or
                         16-bit PNG, TIFF (.tif/.tiff, any bands, uint8/uint16)
                         or NumPy .npy [H, W, bands] (`jaxseg.data.images`)
      masks/             NAME.png: class indices (palette-indexed or greyscale),
                         or RGB colours that the palette maps to classes;
                         or NAME.tif: one band of class indices

`classes.yaml` works as well. With `images/train/` + `images/val/` (and the
same under `masks/`) those are the splits; otherwise every tenth image (by
sorted name) is held out for validation. `label_map` maps stored mask values
to class indices before anything else (e.g. `{"255": 1}` for 0/255 binary
masks); the ignore label (255 unless set) marks pixels left out of loss and
metrics. Every mask is checked while building: a missing mask, a size that
differs from its image, an unknown colour or an out-of-range value raises
with the file named, and nothing half-built is left in the data dir.

8-bit RGB images are stored as PNG; others (multi-band, 16-bit) as
zlib-compressed arrays of their own bands and sample type, which every image
of the folder must share.
"""

import dataclasses
import hashlib
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg import errors
from jaxseg.data import images as images_lib
from jaxseg.data import labels
from jaxseg.data.builders import common

IMAGE_EXTENSIONS = images_lib.EXTENSIONS
META_FILES = ("classes.json", "classes.yaml", "classes.yml")
MASK_EXTENSIONS = (".png", ".tif", ".tiff")
VALIDATION_EVERY = 10


@dataclasses.dataclass(frozen=True)
class FolderMeta:
  """What `classes.json` says, with defaults filled in."""

  class_names: tuple[str, ...]
  palette: np.ndarray
  label_map: dict[int, int]
  ignore_label: int
  ignore_label_given: bool


def read_meta(folder: str) -> FolderMeta:
  """Reads and checks `classes.json` (or `.yaml`) in `folder`."""
  if not os.path.isdir(folder):
    raise errors.MissingInput(f"config.data.folder={folder!r} is not a directory")
  paths = [os.path.join(folder, m) for m in META_FILES if os.path.exists(os.path.join(folder, m))]
  if not paths:
    raise errors.MissingInput(
      f"{folder} has no {' or '.join(META_FILES)}: it must list the class names, e.g. "
      '{"classes": ["background", "cat"]}'
    )
  path = paths[0]
  with open(path) as f:
    if path.endswith(".json"):
      meta = json.load(f)
    else:
      import yaml  # Only for YAML class files.

      meta = yaml.safe_load(f)
  if not isinstance(meta, dict) or not meta.get("classes"):
    raise errors.InvalidInput(f'{path}: needs a non-empty "classes" list of class names')
  names = tuple(str(c) for c in meta["classes"])
  unknown = set(meta) - {"classes", "palette", "label_map", "ignore_label"}
  if unknown:
    raise errors.InvalidInput(f"{path}: unknown keys {sorted(unknown)}")
  ignore = int(meta.get("ignore_label", labels.IGNORE_LABEL))
  if "palette" in meta:
    palette = np.asarray(meta["palette"])
    if palette.shape != (len(names), 3) or palette.min() < 0 or palette.max() > 255:
      raise errors.InvalidInput(
        f'{path}: "palette" must be {len(names)} [r, g, b] triples in 0..255'
      )
    palette = palette.astype(np.uint8)
  else:
    palette = labels.bit_palette(len(names))
  label_map = {int(k): int(v) for k, v in meta.get("label_map", {}).items()}
  for stored, mapped in label_map.items():
    if not (0 <= stored < 256) or not (0 <= mapped < len(names) or mapped == ignore):
      raise errors.InvalidInput(
        f'{path}: "label_map" {stored} -> {mapped} is not a class or the ignore label'
      )
  return FolderMeta(names, palette, label_map, ignore, "ignore_label" in meta)


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  """One user folder; its name is derived from the folder's absolute path."""

  folder: str = ""


def builder_config(folder: str) -> FolderConfig:
  folder = os.path.abspath(folder)
  slug = re.sub(r"[^a-zA-Z0-9]+", "_", os.path.basename(folder.rstrip("/"))).strip("_") or "root"
  digest = hashlib.sha1(folder.encode()).hexdigest()[:8]
  return FolderConfig(name=f"{slug}_{digest}", folder=folder, description=f"Images in {folder}.")


class UserFolder(tfds.core.GeneratorBasedBuilder):
  """A folder of images and masks."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}  # noqa: RUF012

  def _info(self) -> tfds.core.DatasetInfo:
    meta = read_meta(self.builder_config.folder)
    bands, dtype = image_format(self.builder_config.folder)
    return self.dataset_info_from_configs(
      features=common.segmentation_features("png", bands=bands, dtype=dtype),
      supervised_keys=("image", "segmentation_mask"),
      metadata=tfds.core.MetadataDict(classes=list(meta.class_names)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager
    folder = self.builder_config.folder
    meta = read_meta(folder)
    images, masks = os.path.join(folder, "images"), os.path.join(folder, "masks")
    if os.path.isdir(os.path.join(images, "train")):
      splits = {
        split: (os.path.join(images, sub), os.path.join(masks, sub), _stems(images, sub))
        for split, sub in (("train", "train"), ("validation", "val"))
      }
    else:
      files = _stems(images, "")
      held_out = files[::VALIDATION_EVERY]
      splits = {
        "train": (images, masks, [f for f in files if f not in held_out]),
        "validation": (images, masks, held_out),
      }
    return {split: self._generate_examples(meta, *args) for split, args in splits.items()}

  def _generate_examples(
    self, meta: FolderMeta, images: str, masks: str, files: list[tuple[str, str]]
  ):
    bands, dtype = image_format(self.builder_config.folder)
    for stem, image_file in files:
      image_path = os.path.join(images, image_file)
      image = images_lib.read_image(image_path)
      if image.shape[-1] != bands or image.dtype != dtype:
        raise errors.InvalidInput(
          f"{image_path}: {image.shape[-1]} bands of {image.dtype}, but the folder's first "
          f"image has {bands} of {np.dtype(dtype).name}; every image must have the same"
        )
      mask_path = _mask_path(masks, stem)
      mask = read_mask(mask_path, meta)
      if mask.shape != image.shape[:2]:
        raise errors.InvalidInput(
          f"{mask_path}: mask size {mask.shape} differs from image {image_path} {image.shape[:2]}"
        )
      yield stem, {"image": image, "segmentation_mask": mask[..., None], "file_name": stem}


def _stems(images: str, sub: str) -> list[tuple[str, str]]:
  """`(stem, file name)` of the images in `images/sub`, sorted; duplicates refused."""
  directory = os.path.join(images, sub)
  if not os.path.isdir(directory):
    raise errors.MissingInput(f"{directory} is missing")
  found: dict[str, str] = {}
  for name in sorted(os.listdir(directory)):
    stem, ext = os.path.splitext(name)
    if ext.lower() not in IMAGE_EXTENSIONS:
      continue
    if stem in found:
      raise errors.InvalidInput(f"{directory}: {found[stem]} and {name} share the name {stem!r}")
    found[stem] = name
  if not found:
    raise errors.MissingInput(f"{directory} has no {'/'.join(IMAGE_EXTENSIONS)} images")
  return list(found.items())


def image_format(folder: str) -> tuple[int, np.dtype]:
  """`(bands, dtype)` of the folder's images: those of its first image."""
  images = os.path.join(folder, "images")
  sub = "train" if os.path.isdir(os.path.join(images, "train")) else ""
  _, first = _stems(images, sub)[0]
  image = images_lib.read_image(os.path.join(images, sub, first))
  return image.shape[-1], image.dtype


def _mask_path(masks: str, stem: str) -> str:
  """masks/STEM.png, or .tif/.tiff where that exists."""
  for ext in MASK_EXTENSIONS[1:]:
    if os.path.exists(path := os.path.join(masks, stem + ext)):
      return path
  return os.path.join(masks, stem + MASK_EXTENSIONS[0])


def read_mask(path: str, meta: FolderMeta) -> np.ndarray:
  """A mask file -> `[H, W]` uint8 class indices (ignore label allowed), checked."""
  if not os.path.exists(path):
    raise errors.MissingInput(f"{path}: mask missing for its image")
  if path.lower().endswith((".tif", ".tiff")):
    mask = images_lib.read_image(path)
    if mask.shape[-1] != 1:
      raise errors.InvalidInput(f"{path}: a TIFF mask must have one band, not {mask.shape[-1]}")
    return _checked_indices(mask[..., 0].astype(np.int64), meta, path)
  try:
    with Image.open(path) as im:
      if im.mode in ("RGB", "RGBA"):
        mask = _colours_to_indices(np.asarray(im.convert("RGB")), meta, path)
      elif im.mode in ("P", "L", "I", "I;16"):
        mask = np.asarray(im).astype(np.int64)
      else:
        raise errors.InvalidInput(
          f"{path}: mask mode {im.mode!r} is neither indices nor RGB colours"
        )
  except OSError as e:
    raise errors.InvalidInput(f"{path}: unreadable mask ({e})") from e
  return _checked_indices(mask, meta, path)


def _checked_indices(mask: np.ndarray, meta: FolderMeta, path: str) -> np.ndarray:
  if mask.max() > 255:
    raise errors.InvalidInput(f"{path}: mask values up to {mask.max()}; at most 255 are supported")
  values = set(np.unique(mask).tolist())
  if (
    not meta.label_map
    and not meta.ignore_label_given
    and len(meta.class_names) == 2
    and 255 in values
    and values <= {0, 255}
  ):
    raise errors.InvalidInput(
      f"{path}: a 0/255 binary mask, but 255 is the ignore label, so every foreground "
      'pixel would be ignored. Add "label_map": {"255": 1} to classes.json (or '
      '"ignore_label": 255 if 255 really marks pixels to ignore).'
    )
  if meta.label_map:
    lut = np.arange(256)
    for stored, mapped in meta.label_map.items():
      lut[stored] = mapped
    mask = lut[mask]
  bad = sorted(v for v in np.unique(mask).tolist() if v >= len(meta.class_names))
  bad = [v for v in bad if v != meta.ignore_label]
  if bad:
    raise errors.InvalidInput(
      f"{path}: mask values {bad} are not classes 0..{len(meta.class_names) - 1} "
      f"nor the ignore label {meta.ignore_label}; fix the file or add a "
      '"label_map" to classes.json'
    )
  if meta.ignore_label != labels.IGNORE_LABEL:
    mask = np.where(mask == meta.ignore_label, labels.IGNORE_LABEL, mask)
  return mask.astype(np.uint8)


def _colours_to_indices(rgb: np.ndarray, meta: FolderMeta, path: str) -> np.ndarray:
  codes = (rgb.astype(np.int64) << np.array([16, 8, 0])).sum(-1)
  palette_codes = (meta.palette.astype(np.int64) << np.array([16, 8, 0])).sum(-1)
  lookup = {int(c): i for i, c in enumerate(palette_codes)}
  lookup.setdefault(0xFFFFFF, labels.IGNORE_LABEL)  # White is ignored unless a class.
  unique, inverse = np.unique(codes, return_inverse=True)
  unknown = [c for c in unique.tolist() if c not in lookup]
  if unknown:
    colours = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown[:5]]
    raise errors.InvalidInput(f"{path}: colours {colours} are not in the palette of classes.json")
  return np.asarray([lookup[c] for c in unique.tolist()])[inverse].reshape(rgb.shape[:2])
