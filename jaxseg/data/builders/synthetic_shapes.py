"""`synthetic_shapes`: the embedded dataset every config trains on by default.

Images of circles, squares, triangles and five-pointed stars on textured
backgrounds, generated locally (no download) and deterministically from the
builder config's seed. Colour carries no class information: shapes and
backgrounds draw their colours from the same distribution, backgrounds are
textured (value noise, stripes, checkerboards, gradients) and every pixel gets
Gaussian noise, so a model has to use shape and context. Shapes are rotated,
scaled, overlap (later shapes occlude earlier ones; the label is what is visible)
and may be cut by the image border.

Features: `image` (uint8 RGB PNG) and `segmentation_mask` (uint8 PNG with one
channel: 0 background, 1 circle, 2 square, 3 triangle, 4 star).
"""

import dataclasses
import io
import json
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxseg import errors
from jaxseg.data import labels

_SPLIT_CODES = {"train": 0, "validation": 1}
# Shape circumradius as a fraction of the image size.
_RADIUS_RANGE = (0.16, 0.32)
_DEFAULT_SIZE = 96  # The default variant's image size (render_clip's shape scale).
# Fraction of shapes filled with a two-colour blend instead of a flat colour.
_BLEND_PROBABILITY = 0.3
# Per-image standard deviation range of the Gaussian pixel noise.
_NOISE_RANGE = (4, 14)


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
  """Size of the generated dataset.

  Attributes:
    image_size: height and width of every image, in pixels.
    num_train: number of training examples.
    num_validation: number of validation examples.
    seed: everything generated is a function of this seed.
    max_shapes: each image holds 1..max_shapes shapes.
  """

  image_size: int = 96
  num_train: int = 4000
  num_validation: int = 500
  seed: int = 0
  max_shapes: int = 4


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Shapes on textured backgrounds, for offline training and tests."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}  # noqa: RUF012
  BUILDER_CONFIGS = [  # noqa: RUF012 (TFDS reads this class attribute)
    SyntheticShapesConfig(name="default", description="4000 train / 500 validation images, 96x96."),
    SyntheticShapesConfig(
      name="large",
      description=(
        "4000 train / 500 validation images, 192x192, shapes drawn as in the default's "
        "but at twice the size in pixels: stride-32 score maps (FCN) need shapes "
        "several cells wide."
      ),
      image_size=192,
    ),
    SyntheticShapesConfig(
      name="tiny",
      description="48 train / 20 validation images, 64x64; for tests.",
      image_size=64,
      num_train=48,
      num_validation=20,
    ),
  ]
  DEFAULT_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(size, size, 3)),
          "segmentation_mask": tfds.features.Image(shape=(size, size, 1)),
        }
      ),
      supervised_keys=("image", "segmentation_mask"),
      metadata=tfds.core.MetadataDict(
        class_names=list(labels.SYNTHETIC_SHAPES_CLASSES),
        palette=labels.SYNTHETIC_SHAPES_PALETTE.tolist(),
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {
      "train": self._generate_examples("train", cfg.num_train),
      "validation": self._generate_examples("validation", cfg.num_validation),
    }

  def _generate_examples(self, split: str, num_examples: int):
    cfg = self.builder_config
    for index in range(num_examples):
      image, mask = render_example(
        cfg.seed, _SPLIT_CODES[split], index, cfg.image_size, cfg.max_shapes
      )
      yield index, {"image": _png(image), "segmentation_mask": _png(mask[..., None])}


def _png(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
    buf, format="PNG", compress_level=1
  )
  return buf.getvalue()


# ----------------------------------------------------------------------------
# Rendering. Pure NumPy, one generator per example, so any example can be
# regenerated alone from (seed, split, index).


def render_example(
  seed: int, split_code: int, index: int, size: int, max_shapes: int
) -> tuple[np.ndarray, np.ndarray]:
  """Renders one example.

  Returns:
    `(image, mask)`: `[size, size, 3]` uint8 RGB and `[size, size]` uint8 labels.
  """
  rng = np.random.default_rng([seed, split_code, index])
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  image = _background(rng, size, yy, xx)
  mask = np.zeros((size, size), np.uint8)
  num_classes = len(labels.SYNTHETIC_SHAPES_CLASSES)
  for _ in range(rng.integers(1, max_shapes + 1)):
    cls = int(rng.integers(1, num_classes))
    radius = rng.uniform(*_RADIUS_RANGE) * size
    cy, cx = rng.uniform(0.05, 0.95, size=2) * size
    angle = rng.uniform(0, 2 * np.pi)
    inside = _shape_mask(cls, yy - cy, xx - cx, radius, angle)
    image[inside] = _fill(rng, image, inside)
    mask[inside] = cls
  image += rng.normal(0.0, rng.uniform(*_NOISE_RANGE), size=image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), mask


def render_clip(
  seed: int, num_frames: int, height: int, width: int, num_shapes: int = 4
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """The dataset's shapes moving over one of its backgrounds: a test clip.

  Each shape keeps its class, colour and size (the training images' sizes in
  pixels, so a model trained on them sees familiar shapes at any frame size),
  moves at its own constant velocity (bouncing off the edges) and turns slowly.

  Yields:
    `(frame, mask)`: `[height, width, 3]` uint8 RGB and `[height, width]`
    uint8 labels, `num_frames` times.
  """
  rng = np.random.default_rng([seed, 7])
  size = max(height, width)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
  background = _background(rng, size, yy, xx)
  scale = min(height, width)
  shapes = []
  for _ in range(num_shapes):
    radius = min(rng.uniform(*_RADIUS_RANGE) * _DEFAULT_SIZE, 0.3 * scale)
    shapes.append(
      {
        "cls": int(rng.integers(1, len(labels.SYNTHETIC_SHAPES_CLASSES))),
        "radius": radius,
        "colour": _distinct_colour(rng, background[::16, ::16].reshape(-1, 3)),
        "centre": rng.uniform([radius, radius], [height - radius, width - radius]),
        "velocity": rng.uniform(-1, 1, size=2) * scale / 60,
        "angle": rng.uniform(0, 2 * np.pi),
        "spin": rng.uniform(-0.05, 0.05),
      }
    )
  for _ in range(num_frames):
    image, mask = background.copy(), np.zeros((height, width), np.uint8)
    for shape in shapes:
      cy, cx = shape["centre"]
      inside = _shape_mask(shape["cls"], yy - cy, xx - cx, shape["radius"], shape["angle"])
      image[inside] = shape["colour"]
      mask[inside] = shape["cls"]
      low, high = shape["radius"], np.array([height, width]) - shape["radius"]
      centre = shape["centre"] + shape["velocity"]
      bounce = (centre < low) | (centre > high)
      shape["velocity"] = np.where(bounce, -shape["velocity"], shape["velocity"])
      shape["centre"] = np.clip(centre, low, high)
      shape["angle"] += shape["spin"]
    image += rng.normal(0.0, 4.0, size=image.shape)
    yield np.clip(image, 0, 255).astype(np.uint8), mask


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  return rng.uniform(0, 255, size=3).astype(np.float32)


def _distinct_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
  """A random colour at least a little away from every colour in `avoid`."""
  for _ in range(20):
    colour = _random_colour(rng)
    if np.min(np.linalg.norm(avoid - colour, axis=-1)) > 60:
      return colour
  return 255.0 - avoid.mean(axis=0)


def _background(rng, size, yy, xx) -> np.ndarray:
  c0, c1 = _random_colour(rng), _random_colour(rng)
  kind = rng.integers(4)
  if kind == 0:  # Value noise: a coarse random grid, bilinearly upsampled.
    cells = int(rng.integers(2, 9))
    grid = rng.uniform(size=(cells + 1, cells + 1))
    gy, gx = yy / size * cells, xx / size * cells
    y0, x0 = np.floor(gy).astype(int), np.floor(gx).astype(int)
    fy, fx = gy - y0, gx - x0
    t = (
      grid[y0, x0] * (1 - fy) * (1 - fx)
      + grid[y0 + 1, x0] * fy * (1 - fx)
      + grid[y0, x0 + 1] * (1 - fy) * fx
      + grid[y0 + 1, x0 + 1] * fy * fx
    )
  elif kind == 1:  # Stripes at a random angle and period.
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(0.04, 0.25) * size
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period)
  elif kind == 2:  # Checkerboard.
    cell = rng.uniform(0.05, 0.2) * size
    t = ((yy // cell + xx // cell) % 2).astype(np.float32)
  else:  # Linear gradient.
    theta = rng.uniform(0, 2 * np.pi)
    t = (np.cos(theta) * (xx - size / 2) + np.sin(theta) * (yy - size / 2)) / size + 0.5
  t = np.clip(t, 0, 1)[..., None]
  return (c0 * (1 - t) + c1 * t).astype(np.float32)


def _fill(rng, image, inside) -> np.ndarray:
  """Colours for the pixels of a new shape: flat, or a two-colour blend."""
  avoid = image[inside].reshape(-1, 3)
  avoid = avoid[:: max(1, len(avoid) // 64)] if len(avoid) else np.zeros((1, 3))
  colour = _distinct_colour(rng, avoid)
  if rng.uniform() >= _BLEND_PROBABILITY:
    return colour
  other = _distinct_colour(rng, avoid)
  t = rng.uniform(size=(int(inside.sum()), 1)).astype(np.float32) ** 2
  return colour * (1 - t) + other * t


def _shape_mask(cls, dy, dx, radius, angle) -> np.ndarray:
  if cls == 1:  # Circle.
    return dy * dy + dx * dx <= radius * radius
  if cls == 2:  # Square: 4 vertices at the circumradius.
    return _polygon_mask(dy, dx, _regular_polygon(4, radius, angle))
  if cls == 3:  # Equilateral triangle.
    return _polygon_mask(dy, dx, _regular_polygon(3, radius, angle))
  # Five-pointed star: alternating outer and inner vertices.
  outer = _regular_polygon(5, radius, angle)
  inner = _regular_polygon(5, 0.5 * radius, angle + np.pi / 5)
  star = np.stack([outer, inner], axis=1).reshape(10, 2)
  return _polygon_mask(dy, dx, star)


def _regular_polygon(n: int, radius: float, angle: float) -> np.ndarray:
  """`[n, 2]` (y, x) vertices of a regular n-gon centred on the origin."""
  a = angle + 2 * np.pi * np.arange(n) / n
  return np.stack([radius * np.sin(a), radius * np.cos(a)], axis=-1)


def _polygon_mask(py, px, vertices) -> np.ndarray:
  """Even-odd rule point-in-polygon test for every pixel centre."""
  inside = np.zeros(py.shape, bool)
  vy, vx = vertices[:, 0], vertices[:, 1]
  for i in range(len(vertices)):
    y0, x0, y1, x1 = vy[i - 1], vx[i - 1], vy[i], vx[i]
    if y0 == y1:
      continue
    crosses = (y0 > py) != (y1 > py)
    x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    inside ^= crosses & (px < x_at)
  return inside


# ----------------------------------------------------------------------------
# The same images as a user's binary folder (README "Losses").


def write_binary_folder(
  directory: str,
  foreground: str = "star",
  num_train: int = 4000,
  num_validation: int = 500,
  size: int = _DEFAULT_SIZE,
  seed: int = 0,
) -> None:
  """Writes the dataset as a `folder` dataset for binary segmentation: the
  `foreground` shape against everything else, masks stored as 0/255 PNGs
  with `"label_map": {"255": 1}` in classes.json, as users' binary masks come.

  Layout: `images/{train,val}/NNNNN.png`, `masks/{train,val}/NNNNN.png`,
  `classes.json` with classes `["background", foreground]`.
  """
  if foreground not in labels.SYNTHETIC_SHAPES_CLASSES[1:]:
    raise errors.InvalidInput(
      f"foreground={foreground!r} must be one of {list(labels.SYNTHETIC_SHAPES_CLASSES[1:])}"
    )
  cls = labels.SYNTHETIC_SHAPES_CLASSES.index(foreground)
  os.makedirs(directory, exist_ok=True)
  meta = {
    "classes": ["background", foreground],
    "palette": [[0, 0, 0], [255, 255, 255]],
    "label_map": {"255": 1},
  }
  with open(os.path.join(directory, "classes.json"), "w") as f:
    json.dump(meta, f, indent=2)
  for split, sub, count in (("train", "train", num_train), ("validation", "val", num_validation)):
    for kind in ("images", "masks"):
      os.makedirs(os.path.join(directory, kind, sub), exist_ok=True)
    for index in range(count):
      image, mask = render_example(
        seed, _SPLIT_CODES[split], index, size, SyntheticShapesConfig.max_shapes
      )
      name = f"{index:05d}.png"
      Image.fromarray(image).save(os.path.join(directory, "images", sub, name), compress_level=1)
      binary = np.where(mask == cls, 255, 0).astype(np.uint8)
      Image.fromarray(binary).save(os.path.join(directory, "masks", sub, name), compress_level=1)


def main(argv: list[str] | None = None) -> None:
  """`python -m jaxseg.data.builders.synthetic_shapes --binary_folder=DIR [--foreground=star]`."""
  import argparse

  parser = argparse.ArgumentParser(description=write_binary_folder.__doc__.split("\n\n")[0])
  parser.add_argument("--binary_folder", required=True, help="Directory to write.")
  parser.add_argument(
    "--foreground",
    default="star",
    choices=labels.SYNTHETIC_SHAPES_CLASSES[1:],
    help="The shape that is foreground.",
  )
  parser.add_argument("--num_train", type=int, default=4000)
  parser.add_argument("--num_validation", type=int, default=500)
  args = parser.parse_args(argv)
  write_binary_folder(args.binary_folder, args.foreground, args.num_train, args.num_validation)
  print(
    f"Wrote {args.num_train} + {args.num_validation} images with 0/255 {args.foreground} masks "
    f"to {args.binary_folder}"
  )


if __name__ == "__main__":
  main()
