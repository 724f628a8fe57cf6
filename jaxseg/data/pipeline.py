"""Input pipeline: grain over `tfds.data_source` (ArrayRecord), one shard per process.

The host only decodes, checks and batches; augmentation runs on the device
(`jaxseg.data.augment`). Batch `t` of the global stream holds examples
`[t*B, (t+1)*B)` of the shuffled, repeated split, and process `p` reads the
contiguous slice `p*B/P .. (p+1)*B/P` of it, so a global batch is the same
whatever the number of processes, and a run's data order is a function of the
seed alone. The stream is random access, so a resumed run starts it at the
global batch its step says; checkpoints need no iterator state, and a run can
resume on a different number of hosts.

Training images of different sizes are padded to one shape (the padding is
the mean colour in the image and the ignore label in the label); validation
images are grouped by size into a few padded shapes (`eval_plan`), and those
too large for a batch are evaluated with sliding windows. Host batches are
dicts of NumPy arrays: `image` uint8 or uint16 `[b, H, W, bands]`, `label`
int32 `[b, H, W]`, `size` int32 `[b, 2]` (each example's valid height and
width); for training `base_scale` float32 `[b]` (the resize factor a scale
ratio of 1 means), and for evaluation `mask` bool `[b]` (False for the padding
that completes a batch). Validation labels are never resized.
"""

import dataclasses
import json
import logging
import os

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils
from PIL import Image
from tqdm.auto import tqdm

from jaxseg import errors
from jaxseg.data import FOLDER, DatasetSpec, get_dataset_spec, images, preprocessing
from jaxseg.data.builders import folder
from jaxseg.parallel import sharding


class _QuietDecoderHint(logging.Filter):
  """TFDS suggests OpenCV for decoding; PIL decodes these images fast enough."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "OpenCV is not installed" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietDecoderHint())


def prepare(config: ml_collections.ConfigDict) -> tuple[DatasetSpec, tfds.core.DatasetBuilder]:
  """Resolves `config.data` and makes sure the dataset is prepared on disk.

  The dataset is generated (or downloaded) on first use into `config.data.data_dir`,
  or `$TFDS_DATA_DIR`, or TFDS's default `~/tensorflow_datasets`. Process 0
  prepares first; the others then find it ready on shared storage or prepare
  their own copy.
  """
  spec = get_dataset_spec(config.data)
  data_dir = config.data.data_dir or None
  if config.data.name == FOLDER:
    builder = tfds.builder_cls("user_folder")(
      config=folder.builder_config(config.data.folder), data_dir=data_dir
    )
  else:
    name = spec.tfds_name + (f"/{config.data.variant}" if config.data.variant else "")
    builder = tfds.builder(name, data_dir=data_dir)
  manual_dir = config.data.manual_dir or os.environ.get("JAXSEG_MANUAL_DIR") or None
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  for turn in range(2):
    if (jax.process_index() == 0) == (turn == 0):
      try:
        builder.download_and_prepare(file_format="array_record", download_config=download_config)
      except ImportError as e:
        if "tensorflow" not in str(e).lower():
          raise
        raise errors.MissingInput(
          f"preparing {builder.info.full_name} needs TensorFlow (reading it later does not): "
          "pip install 'jaxseg[prepare]', or pip install -r requirements.txt"
        ) from e
      except AssertionError as e:  # TFDS's way of saying the manual dir is missing.
        if "Manual directory" not in str(e):
          raise
        raise errors.MissingInput(
          f"{e}\nSet config.data.manual_dir (or $JAXSEG_MANUAL_DIR) to that directory."
        ) from None
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"jaxseg:prepare:{turn}")
  return spec, builder


class _DecodeAndCheck:
  """TFDS example -> `{image, label}` with the dataset's label map applied,
  refusing labels the model cannot learn."""

  def __init__(
    self, spec: DatasetSpec, dataset: str, split: str, num_records: int, channels: int = 3
  ):
    self.spec, self.dataset, self.split, self.num_records = spec, dataset, split, num_records
    self.channels = channels

  def where(self, index: int) -> str:
    return f"dataset {self.dataset!r} split {self.split!r} example {index % self.num_records}"

  def __call__(self, index: int, example: dict) -> dict[str, np.ndarray]:
    image = np.asarray(example[self.spec.image_key])
    label = np.asarray(example[self.spec.label_key])
    if label.ndim == 3:
      label = label[..., 0]
    where = self.where(index)
    if image.ndim != 3 or image.shape[-1] != self.channels or image.dtype not in images.DTYPES:
      raise errors.InvalidInput(
        f"{where}: image must be uint8 or uint16 [H, W, {self.channels}] "
        f"(config.data.channels), got {image.dtype} {image.shape}"
      )
    if image.shape[:2] != label.shape:
      raise errors.InvalidInput(
        f"{where}: image size {image.shape[:2]} != label size {label.shape}"
      )
    label = label.astype(np.int32)
    mapped = ""
    if self.spec.label_map is not None:
      lut = np.asarray(self.spec.label_map, np.int32)
      if label.min() < 0 or label.max() >= len(lut):
        raise errors.InvalidInput(
          f"{where}: raw label values outside [0, {len(lut)}) of its label map"
        )
      label, mapped = lut[label], " after the dataset's label map"
    bad = (label >= self.spec.num_classes) | (label < 0)
    bad &= label != self.spec.ignore_label
    if bad.any():
      raise errors.InvalidInput(
        f"{where}: label values {sorted(np.unique(label[bad]).tolist())}{mapped} are outside "
        f"[0, {self.spec.num_classes}) and not the ignore label {self.spec.ignore_label}"
      )
    return {"image": image, "label": label}


class _FitAndPad:
  """Pads every example to `shape` (downscaling, keeping the aspect ratio, the
  training images that do not fit) and records its valid size and base scale.

  `base_size` is mmsegmentation's `img_scale` as `(long, short)`: a scale ratio
  of 1 resizes the original image to fit inside it. None: ratio 1 is the
  original size.
  """

  def __init__(self, check, shape, ignore_label, norm, *, base_size=None, downscale=True, key=""):
    self.check, self.shape, self.ignore_label = check, tuple(shape), ignore_label
    self.norm, self.base_size, self.downscale, self.key = norm, base_size, downscale, key

  def __call__(self, index: int, example: dict) -> dict[str, np.ndarray]:
    image, label = example["image"], example["label"]
    h, w = label.shape
    base = 1.0
    if self.base_size:
      long, short = self.base_size
      base = min(long / max(h, w), short / min(h, w))
    ph, pw = self.shape
    if h > ph or w > pw:
      if not self.downscale:
        raise errors.InvalidInput(
          f"{self.check.where(index)}: size {(h, w)} does not fit {self.key}={self.shape}; "
          "set it to the largest training image (larger ones are then downscaled to fit)"
        )
      fit = min(ph / h, pw / w)
      size = (max(1, min(pw, round(w * fit))), max(1, min(ph, round(h * fit))))
      image = images.resize(image, size[1], size[0])
      label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
      base *= h / label.shape[0]
      h, w = label.shape
    padded_image = self.norm.empty(ph, pw).astype(image.dtype)
    padded_image[:h, :w] = image
    padded_label = np.full((ph, pw), self.ignore_label, np.int32)
    padded_label[:h, :w] = label
    return {
      "image": padded_image,
      "label": padded_label,
      "size": np.asarray([h, w], np.int32),
      "base_scale": np.float32(base),
    }


def decoded_split(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, split: str
) -> tuple[grain.MapDataset, _DecodeAndCheck]:
  """`split` as a random-access dataset of checked `{image, label}` examples at
  their own sizes, and the checker (which names examples in errors)."""
  splits = sorted(builder.info.splits.keys())
  if split not in splits:
    name = config.data.folder if config.data.name == FOLDER else config.data.name
    raise errors.InvalidInput(
      f"{name} has no split {split!r} (config.data.train_split, eval_split or --split); "
      f"its splits: {', '.join(splits)}"
    )
  source = builder.as_data_source(split)
  check = _DecodeAndCheck(spec, config.data.name, split, len(source), config.data.channels)
  return grain.MapDataset.source(source).map_with_index(check), check


def image_format(spec: DatasetSpec, builder) -> tuple[int, str]:
  """`(bands, sample type)` of the dataset's images, from its TFDS features."""
  feature = builder.info.features[spec.image_key]
  return int(feature.shape[-1]), np.dtype(feature.np_dtype).name


def resolve_input(config: ml_collections.ConfigDict, spec: DatasetSpec, builder) -> None:
  """Checks `config.data.channels` against the dataset and fills in
  `config.data.mean`, `std` and `dtype` (the run's `config.json` then holds
  what evaluation, predict and export must use).

  Statistics: the config's when given; ImageNet's for uint8 RGB; otherwise the
  dataset's per-band statistics, which `python -m jaxseg.data.stats` stores
  beside it (computed here, and stored, on first use).
  """
  bands, dtype = image_format(spec, builder)
  name = config.data.folder if config.data.name == FOLDER else config.data.name
  if bands != config.data.channels:
    raise errors.InvalidInput(
      f"config.data.channels={config.data.channels}, but the images of {name} have {bands} "
      f"bands: set --config.data.channels={bands}"
    )
  mean, std = tuple(config.data.mean), tuple(config.data.std)
  if bool(mean) != bool(std):
    raise errors.InvalidInput(
      "config.data.mean and config.data.std are given together or not at all"
    )
  if not mean:
    if bands == 3 and dtype == "uint8":
      mean, std = preprocessing.MEAN_RGB, preprocessing.STDDEV_RGB
    else:
      stats = band_statistics(config, spec, builder)
      mean, std = tuple(stats["mean"]), tuple(stats["std"])
  for key, values in (("mean", mean), ("std", std)):
    if len(values) != bands:
      raise errors.InvalidInput(
        f"config.data.{key} has {len(values)} values; the images have {bands} bands"
      )
  if min(std) <= 0:
    raise errors.InvalidInput(f"config.data.std={std} must be positive (a constant band?)")
  with config.unlocked():
    config.data.mean = tuple(float(m) for m in mean)
    config.data.std = tuple(float(s) for s in std)
    config.data.dtype = dtype


BAND_STATS_FILE = "band_stats.json"


def band_statistics(
  config, spec: DatasetSpec, builder, *, split: str | None = None, recompute: bool = False
) -> dict:
  """Per-band mean and standard deviation of `split`'s pixels (default the
  training split's), computed in one pass of float64 sums. The training
  split's are what normalise the images: they are read from `band_stats.json`
  beside the prepared dataset, or computed and written there; another split's
  are computed and never stored."""
  path = os.path.join(builder.data_dir, BAND_STATS_FILE)
  train_split = config.data.train_split or spec.train_split
  split = split or train_split
  if os.path.exists(path) and not recompute and split == train_split:
    with open(path) as f:
      stats = json.load(f)
    if stats.get("split") == split:
      return stats
  decoded, _ = decoded_split(config, spec, builder, split)
  total = total_sq = None
  pixels = 0
  reader = decoded.to_iter_dataset(_read_options(config))
  for example in tqdm(reader, total=len(decoded), desc=f"band statistics of {split}", unit="image"):
    x = example["image"].reshape(-1, example["image"].shape[-1]).astype(np.float64)
    total = x.sum(0) if total is None else total + x.sum(0)
    total_sq = (x * x).sum(0) if total_sq is None else total_sq + (x * x).sum(0)
    pixels += len(x)
  mean = total / pixels
  std = np.sqrt(np.maximum(total_sq / pixels - mean * mean, 0.0))
  stats = {
    "split": split,
    "images": len(decoded),
    "pixels": int(pixels),
    "dtype": image_format(spec, builder)[1],
    "mean": [round(float(m), 4) for m in mean],
    "std": [round(float(s), 4) for s in std],
  }
  if jax.process_index() == 0 and split == train_split:
    with open(path, "w") as f:
      json.dump(stats, f, indent=2)
  return stats


def _padded(ds, check, config, spec) -> grain.MapDataset:
  """Training examples padded to `config.data.max_size` (larger ones
  downscaled to fit); when unset, to the first example's size."""
  key, shape = "config.data.max_size", config.data.max_size
  if not shape:
    shape = ds[0]["label"].shape
    key += f" (unset, so the first example's size {shape})"
  fit = _FitAndPad(
    check,
    shape,
    spec.ignore_label,
    preprocessing.from_config(config),
    base_size=config.augment.base_size,
    downscale=bool(config.data.max_size),
    key=key,
  )
  return ds.map_with_index(fit)


def _read_options(config: ml_collections.ConfigDict) -> grain.ReadOptions:
  return grain.ReadOptions(
    num_threads=config.data.num_threads, prefetch_buffer_size=config.data.prefetch_batches
  )


def _this_process(ds: grain.MapDataset, global_batch_size: int, mesh, key: str):
  """Global batches of `ds`, of which this process keeps its contiguous slice.

  `key` names the config field holding `global_batch_size`, for the error.
  """
  per_process = sharding.per_process_batch_size(global_batch_size, mesh, key)
  return ds.batch(per_process, drop_remainder=True)[jax.process_index() :: jax.process_count()]


def train_iterator(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, mesh, start_step: int = 0
) -> grain.DatasetIterator:
  """Endless, shuffled (reshuffled every epoch) host batches of the train split,
  starting with the batch of step `start_step + 1`."""
  ds, check = decoded_split(config, spec, builder, config.data.train_split or spec.train_split)
  ds = _padded(ds, check, config, spec)
  ds = ds.shuffle(seed=config.seed).repeat()
  ds = _this_process(ds, config.batch_size, mesh, "config.batch_size")[start_step:]
  return iter(ds.to_iter_dataset(_read_options(config)))


def bucket(n: int) -> int:
  """`n` rounded up to the next of a few sizes: multiples of 32, eight per
  octave from 256 (256, 288, ..., 512, 576, ..., 1024, 1152, ..., 2048), so
  validation images of any size share few compiled shapes."""
  b = 32
  while b < n:
    b += max(32, 2 ** (b.bit_length() - 4))
  return b


@dataclasses.dataclass(frozen=True)
class EvalPlan:
  """How training-time evaluation covers the validation split.

  Attributes:
    batches: `(padded (H, W), example indices)`; each list holds a global
      batch (a multiple of the data-parallel devices), -1 for padding.
    slide: examples evaluated with sliding windows (larger than a batch's
      pixels, or every example with `config.evaluation.mode="slide"`).
    num_examples: examples in the split.
  """

  batches: tuple[tuple[tuple[int, int], tuple[int, ...]], ...]
  slide: tuple[int, ...]
  num_examples: int

  def describe(self) -> str:
    shapes = sorted({shape for shape, _ in self.batches})
    text = f"{self.num_examples} images in {len(self.batches)} batches of {len(shapes)} shapes"
    if self.slide:
      text += f", {len(self.slide)} by sliding window"
    return text


def eval_plan(config: ml_collections.ConfigDict, spec: DatasetSpec, builder, mesh) -> EvalPlan:
  """Groups the validation images by padded size (`bucket` of height and
  width) into batches of at most `config.eval_batch_size` images and
  `config.evaluation.batch_pixels` pixels. Reads every image's size once."""
  sharding.per_process_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  decoded, _ = decoded_split(config, spec, builder, config.data.eval_split or spec.eval_split)
  sizes_ds = decoded.map(lambda e: e["label"].shape).to_iter_dataset(_read_options(config))
  sizes = list(tqdm(sizes_ds, total=len(decoded), desc="validation image sizes", unit="image"))
  budget = config.evaluation.batch_pixels
  groups: dict[tuple[int, int], list[int]] = {}
  slide = []
  for i, (h, w) in enumerate(sizes):
    shape = (bucket(h), bucket(w))
    if config.evaluation.mode == "slide" or shape[0] * shape[1] > budget:
      slide.append(i)
    else:
      groups.setdefault(shape, []).append(i)
  batches = []
  for shape, members in sorted(groups.items()):
    size = images_per_call(config, shape[0] * shape[1], mesh)
    for start in range(0, len(members), size):
      chunk = members[start : start + size]
      batches.append((shape, tuple(chunk + [-1] * (size - len(chunk)))))
  return EvalPlan(tuple(batches), tuple(slide), len(sizes))


def images_per_call(config: ml_collections.ConfigDict, pixels: int, mesh) -> int:
  """How many images (or sliding-window tiles) of `pixels` pixels one
  evaluation call takes: at most `config.eval_batch_size` and
  `config.evaluation.batch_pixels` pixels, a multiple of the data-parallel
  devices (at least one each)."""
  devices = mesh.shape[sharding.DATA_AXIS]
  fit = max(1, min(config.eval_batch_size, config.evaluation.batch_pixels // pixels))
  return max(devices, fit // devices * devices)


def _eval_example(decoded, norm, ignore_label, shape):
  """Example `i` of `decoded` (or padding for -1) padded to `shape`, with `mask`."""

  def load(i: int) -> dict[str, np.ndarray]:
    image = norm.empty(*shape)
    label = np.full(shape, ignore_label, np.int32)
    size = np.zeros(2, np.int32)
    if i >= 0:
      example = decoded[i]
      h, w = example["label"].shape
      image[:h, :w], label[:h, :w], size[:] = example["image"], example["label"], (h, w)
    return {"image": image, "label": label, "size": size, "mask": np.bool_(i >= 0)}

  return load


def eval_batches(config: ml_collections.ConfigDict, spec: DatasetSpec, builder, plan: EvalPlan):
  """This process's slice of each whole-image batch of `plan`, in order."""
  decoded, _ = decoded_split(config, spec, builder, config.data.eval_split or spec.eval_split)
  norm = preprocessing.from_config(config)
  p, count = jax.process_index(), jax.process_count()
  for shape, indices in plan.batches:
    share = len(indices) // count
    mine = list(indices[p * share : (p + 1) * share])
    ds = grain.MapDataset.source(mine).map(_eval_example(decoded, norm, spec.ignore_label, shape))
    yield from ds.batch(share).to_iter_dataset(_read_options(config))


def eval_examples(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, count: int
) -> dict[str, np.ndarray]:
  """The first `count` examples of the eval split, padded to one shape (the
  bucket of the largest) and stacked: `image`, `label`, `size`. The same on
  every process."""
  decoded, _ = decoded_split(config, spec, builder, config.data.eval_split or spec.eval_split)
  chosen = [decoded[i] for i in range(min(count, len(decoded)))]
  shape = tuple(bucket(max(e["label"].shape[d] for e in chosen)) for d in (0, 1))
  load = _eval_example(chosen, preprocessing.from_config(config), spec.ignore_label, shape)
  examples = [load(i) for i in range(len(chosen))]
  return {k: np.stack([e[k] for e in examples]) for k in ("image", "label", "size")}
