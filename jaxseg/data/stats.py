"""What a dataset holds: class pixel frequencies, image sizes, class weights,
and per-band image statistics.

    python -m jaxseg.data.stats --dataset=voc2012 [--split=train]
    python -m jaxseg.data.stats --config=configs/unet.py:folder --config.data.folder=DIR

Reads the split through the same decoding and label audit as training, then
prints per-class pixel counts and frequencies, a histogram of image sizes, and
median-frequency-balancing weights (Eigen & Fergus 2015, as SegNet uses them:
`median(f) / f_c`, where `f_c` is class c's pixels over the pixels of the
images that contain c), ready for `--config.loss.class_weights`.

It also measures each image band's mean and standard deviation over the same
split; the training split's are stored beside the prepared dataset
(`band_stats.json`): training standardises multi-band and 16-bit images with
them when `config.data.mean/std` are () (uint8 RGB keeps ImageNet's).
"""

import collections
import os

import numpy as np
from absl import flags
from tqdm.auto import tqdm

from jaxseg import cli
from jaxseg.data import pipeline

FLAGS = flags.FLAGS


def class_statistics(labels_iter, num_classes: int, ignore_label: int) -> dict:
  """Pixel counts, per-image presence and sizes over `[H, W]` label maps.

  Returns:
    `{"pixels": [C] int, "image_pixels": [C] int (pixels of the images holding
    each class), "images_with": [C] int, "ignored": int, "sizes": Counter of
    (h, w), "images": int}`.
  """
  pixels = np.zeros(num_classes, np.int64)
  image_pixels = np.zeros(num_classes, np.int64)
  images_with = np.zeros(num_classes, np.int64)
  ignored, sizes, images = 0, collections.Counter(), 0
  for label in labels_iter:
    counts = np.bincount(label[label != ignore_label].ravel(), minlength=num_classes)
    pixels += counts
    image_pixels += np.where(counts > 0, label.size, 0)
    images_with += counts > 0
    ignored += int((label == ignore_label).sum())
    sizes[label.shape] += 1
    images += 1
  return {
    "pixels": pixels,
    "image_pixels": image_pixels,
    "images_with": images_with,
    "ignored": ignored,
    "sizes": sizes,
    "images": images,
  }


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
  """`median(f) / f_c` with `f_c = pixels_c / image_pixels_c`; 0 for absent classes."""
  present = pixels > 0
  freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
  median = np.median(freq[present]) if present.any() else 0.0
  return np.where(present, median / np.where(present, freq, 1.0), 0.0)


def format_report(stats: dict, class_names, weights: np.ndarray) -> str:
  total = int(stats["pixels"].sum())
  width = max(10, *(len(n) for n in class_names))
  lines = [f"{'class':<{width}} {'pixels':>14} {'share %':>8} {'images':>7} {'weight':>8}"]
  lines.append("-" * len(lines[0]))
  rows = zip(class_names, stats["pixels"], stats["images_with"], weights, strict=True)
  for name, count, images, weight in rows:
    share = 100 * count / max(total, 1)
    lines.append(f"{name:<{width}} {count:>14,} {share:>8.3f} {images:>7} {weight:>8.4f}")
  lines.append("-" * len(lines[0]))
  lines.append(
    f"{stats['images']} images, {total:,} labelled and {stats['ignored']:,} ignored pixels"
  )
  lines.append("\nImage sizes (height x width: images):")
  for (h, w), n in stats["sizes"].most_common(10):
    lines.append(f"  {h} x {w}: {n}")
  if len(stats["sizes"]) > 10:
    lines.append(f"  ... and {len(stats['sizes']) - 10} other sizes")
  rounded = ", ".join(f"{w:.4g}" for w in weights)
  lines.append(f"\nMedian-frequency class weights:\n  --config.loss.class_weights='({rounded},)'")
  return "\n".join(lines)


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_config_flag(default="configs/default.py")
  flags.DEFINE_string("dataset", None, "Overrides config.data.name.")
  flags.DEFINE_string("split", None, "Split to read; default the dataset's training split.")
  flags.DEFINE_integer("limit", 0, "Read at most this many examples (0: all).")
  flags.DEFINE_bool("bands", True, "Also measure and store per-band image statistics.")


def main(argv):
  del argv
  cli.quiet_logging()
  [(_, config)] = cli.load_configs()
  if FLAGS.dataset:
    with config.unlocked():
      config.data.name = FLAGS.dataset
      config.data.variant = ""
  spec, builder = pipeline.prepare(config)
  split = FLAGS.split or config.data.train_split or spec.train_split
  decoded, _ = pipeline.decoded_split(config, spec, builder, split)
  n = min(len(decoded), FLAGS.limit) if FLAGS.limit else len(decoded)
  labels_iter = (decoded[i]["label"] for i in tqdm(range(n), desc=f"reading {split}"))
  stats = class_statistics(labels_iter, spec.num_classes, spec.ignore_label)
  weights = median_frequency_weights(stats["pixels"], stats["image_pixels"])
  print(f"\n{config.data.name} / {split}\n" + format_report(stats, spec.class_names, weights))
  if FLAGS.bands:
    bands = pipeline.band_statistics(config, spec, builder, split=split, recompute=True)
    print(format_bands(bands))
    if split == (config.data.train_split or spec.train_split):
      print(f"Stored in {os.path.join(builder.data_dir, pipeline.BAND_STATS_FILE)}")
    else:
      print("Not stored: images are normalised with the training split's statistics")


def format_bands(stats: dict) -> str:
  """Per-band mean and deviation as a table and as config overrides."""
  lines = [f"\nBands ({stats['dtype']}, {stats['images']} images, {stats['pixels']:,} pixels):"]
  lines.append(f"  {'band':>4} {'mean':>12} {'std':>12}")
  for i, (m, sd) in enumerate(zip(stats["mean"], stats["std"], strict=True)):
    lines.append(f"  {i:>4} {m:>12.4f} {sd:>12.4f}")
  as_tuple = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ",)"
  lines.append(
    f"  --config.data.mean='{as_tuple(stats['mean'])}' --config.data.std='{as_tuple(stats['std'])}'"
  )
  return "\n".join(lines)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
