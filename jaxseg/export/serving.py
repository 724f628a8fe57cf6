"""Runs a model exported by `python -m jaxseg.export`; needs only jax, numpy and Pillow.

    python serving.py --model_dir=DIR --input=image.jpg --output=labels.png

or, from Python, `ExportedSegmenter(DIR).predict(image)` -> `[H, W]` class
indices. The export holds the network with its preprocessing (uint8 RGB, or
the run's bands and sample type, in; logits out) for any batch size and,
where the network allows, any height and width (each image then runs whole);
otherwise for a fixed tile size: images that fit the tile are padded into
it, larger ones are covered by overlapping tiles whose logits are averaged. This file is copied
next to every export and imports nothing from jaxseg, so a serving machine
needs neither the training code nor Flax.
"""

import argparse
import json
import os

import numpy as np
from PIL import Image


class ExportedSegmenter:
  """An exported jaxseg model (`model.jax`) and its label metadata.

  Subclasses for other formats (`serving_tf.py`) override `FORMAT`, `_load`
  and `logits`; images are tiled, or run whole where the export takes any size.
  """

  FORMAT = "stablehlo"
  any_size = False

  def __init__(self, model_dir: str):
    with open(os.path.join(model_dir, "metadata.json")) as f:
      self.metadata = json.load(f)
    # Exports from before per-format metadata are StableHLO at the tile size.
    info = self.metadata.get("formats", {}).get(self.FORMAT, {})
    self.any_size = bool(info.get("symbolic_size"))
    self._load(model_dir, info)
    self.tile = tuple(self.metadata["input_size"])
    self.class_names = tuple(self.metadata["class_names"])
    self.palette = np.asarray(self.metadata["palette"], np.uint8)
    self.dtype = np.dtype(self.metadata.get("input_dtype", "uint8"))
    self.pad_colour = np.asarray(self.metadata["pad_colour"], self.dtype)

  def _load(self, model_dir: str, info: dict) -> None:
    from jax import export  # Only this format needs JAX.

    with open(os.path.join(model_dir, info.get("path", "model.jax")), "rb") as f:
      self.exported = export.deserialize(bytearray(f.read()))

  def logits(self, images: np.ndarray) -> np.ndarray:
    """`[N, tile_h, tile_w, bands]` -> float32 `[N, tile_h, tile_w, C]`."""
    return np.asarray(self.exported.call(np.asarray(images, self.dtype)))

  def predict(self, image: np.ndarray, batch: int = 8) -> np.ndarray:
    """`[H, W, bands]` (uint8 RGB, or the run's bands and type) -> `[H, W]`
    uint8 class indices (a binary run's foreground by its threshold, as
    `metadata["binary"]` says)."""
    h, w = image.shape[:2]
    if self.any_size:  # The export pads and crops inside.
      return self._decide(self.logits(image[None])[0])
    th, tw = self.tile
    ph, pw = max(h, th), max(w, tw)
    padded = np.empty((ph, pw, len(self.pad_colour)), self.pad_colour.dtype)
    padded[...] = self.pad_colour
    padded[:h, :w] = image
    # Tiles every two thirds of a tile, the last flush with the edge.
    ys, xs = _starts(ph, th), _starts(pw, tw)
    corners = [(y, x) for y in ys for x in xs]
    total = None
    count = np.zeros((ph, pw, 1), np.float32)
    for i in range(0, len(corners), batch):
      chunk = corners[i : i + batch]
      out = self.logits(np.stack([padded[y : y + th, x : x + tw] for y, x in chunk]))
      if total is None:
        total = np.zeros((ph, pw, out.shape[-1]), np.float32)
      for (y, x), tile_logits in zip(chunk, out, strict=True):
        total[y : y + th, x : x + tw] += tile_logits
        count[y : y + th, x : x + tw] += 1
    return self._decide((total / count)[:h, :w])

  def _decide(self, logits: np.ndarray) -> np.ndarray:
    binary = self.metadata.get("binary")
    if binary is None:
      return logits.argmax(-1).astype(np.uint8)
    # A binary run: foreground where its softmax probability reaches the threshold.
    fg = binary["foreground"]
    z = logits - logits.max(-1, keepdims=True)
    prob = np.exp(z[..., fg]) / np.exp(z).sum(-1)
    return np.where(prob >= binary["threshold"], fg, 1 - fg).astype(np.uint8)


def _starts(size: int, tile: int) -> list[int]:
  stride = max(1, 2 * tile // 3)
  if size <= tile:
    return [0]
  n = -(-(size - tile) // stride) + 1
  return [min(i * stride, size - tile) for i in range(n)]


def main(formats: dict | None = None, doc: str = __doc__):
  """The command line; `formats` maps `--format` names to segmenter classes."""
  formats = formats or {"stablehlo": ExportedSegmenter}
  parser = argparse.ArgumentParser(description=doc.split("\n", maxsplit=1)[0])
  parser.add_argument("--model_dir", default=os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument("--format", choices=sorted(formats), default=next(iter(formats)))
  parser.add_argument("--input", required=True)
  parser.add_argument("--output", required=True)
  args = parser.parse_args()
  model = formats[args.format](args.model_dir)
  if args.input.lower().endswith((".tif", ".tiff")):
    import tifffile  # Multi-band images.

    image = tifffile.imread(args.input)
    image = image[..., None] if image.ndim == 2 else image
  elif args.input.lower().endswith(".npy"):
    image = np.load(args.input)
  else:
    with Image.open(args.input) as im:
      image = np.asarray(im.convert("RGB"))
  labels = model.predict(image)
  out = Image.fromarray(labels, mode="P")
  palette = np.zeros((256, 3), np.uint8)
  palette[: len(model.palette)] = model.palette
  out.putpalette(palette.ravel().tolist())
  out.save(args.output)
  counts = np.bincount(labels.ravel(), minlength=len(model.class_names))
  shares = ", ".join(
    f"{n} {100 * c / labels.size:.0f}%" for n, c in zip(model.class_names, counts, strict=True) if c
  )
  print(f"{args.input} -> {args.output} ({shares})")


if __name__ == "__main__":
  main()
