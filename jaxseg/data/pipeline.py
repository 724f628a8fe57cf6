"""Input pipeline: grain over `tfds.data_source` (ArrayRecord), one shard per process.

The host only decodes, checks and batches; augmentation runs on the device
(`jaxseg.data.augment`). Batch `t` of the global stream holds examples
`[t*B, (t+1)*B)` of the shuffled, repeated split, and process `p` reads the
contiguous slice `p*B/P .. (p+1)*B/P` of it, so a global batch is the same
whatever the number of processes, and a run's data order is a function of the
seed alone. The stream is random access, so a resumed run starts it at the
global batch its step says; checkpoints need no iterator state, and a run can
resume on a different number of hosts.

Images of different sizes are padded to one shape per split (the padding is
the mean colour in the image and the ignore label in the label). Host batches
are dicts of NumPy arrays: `image` uint8 `[b, H, W, 3]`, `label` int32
`[b, H, W]`, `size` int32 `[b, 2]` (each example's valid height and width);
for training `base_scale` float32 `[b]` (the resize factor a scale ratio of 1
means), and for evaluation `mask` bool `[b]` (False for the padding that
completes the last batch, which is never dropped). Validation labels are never
resized.
"""

import logging
import math
import os

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils
from PIL import Image

from jaxseg import errors, sharding
from jaxseg.data import FOLDER, DatasetSpec, get_dataset_spec
from jaxseg.data.builders import folder
from jaxseg.models import preprocessing


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

  def __init__(self, spec: DatasetSpec, dataset: str, split: str, num_records: int):
    self.spec, self.dataset, self.split, self.num_records = spec, dataset, split, num_records

  def where(self, index: int) -> str:
    return f"dataset {self.dataset!r} split {self.split!r} example {index % self.num_records}"

  def __call__(self, index: int, example: dict) -> dict[str, np.ndarray]:
    image = np.asarray(example[self.spec.image_key])
    label = np.asarray(example[self.spec.label_key])
    if label.ndim == 3:
      label = label[..., 0]
    where = self.where(index)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise errors.InvalidInput(
        f"{where}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}"
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

  def __init__(self, check, shape, ignore_label, *, base_size=None, downscale=True, key=""):
    self.check, self.shape, self.ignore_label = check, tuple(shape), ignore_label
    self.base_size, self.downscale, self.key = base_size, downscale, key

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
          "raise it (validation images are scored at their own size, never resized)"
        )
      fit = min(ph / h, pw / w)
      size = (max(1, min(pw, round(w * fit))), max(1, min(ph, round(h * fit))))
      image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
      label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
      base *= h / label.shape[0]
      h, w = label.shape
    padded_image = np.empty((ph, pw, 3), np.uint8)
    padded_image[...] = preprocessing.PAD_COLOUR
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
  source = builder.as_data_source(split)
  check = _DecodeAndCheck(spec, config.data.name, split, len(source))
  return grain.MapDataset.source(source).map_with_index(check), check


def _padded(ds, check, config, spec, *, train: bool) -> grain.MapDataset:
  """`ds` with every example padded to the split's shape: `config.data.max_size`
  (training) or `config.data.eval_size`; when unset, the first example's size."""
  key = "config.data.max_size" if train else "config.data.eval_size"
  shape = config.data.max_size if train else config.data.eval_size
  if not shape:
    shape = ds[0]["label"].shape
    key += f" (unset, so the first example's size {shape})"
  base_size = config.augment.base_size if train else None
  downscale = train and bool(config.data.max_size)
  fit = _FitAndPad(
    check, shape, spec.ignore_label, base_size=base_size, downscale=downscale, key=key
  )
  return ds.map_with_index(fit)


def _padded_eval_split(config: ml_collections.ConfigDict, spec: DatasetSpec, builder):
  ds, check = decoded_split(config, spec, builder, config.data.eval_split or spec.eval_split)
  return _padded(ds, check, config, spec, train=False)


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
  ds = _padded(ds, check, config, spec, train=True)
  ds = ds.shuffle(seed=config.seed).repeat()
  ds = _this_process(ds, config.batch_size, mesh, "config.batch_size")[start_step:]
  return iter(ds.to_iter_dataset(_read_options(config)))


def eval_batches(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, mesh
) -> grain.IterDataset:
  """Every example of the eval split once, in order, in batches padded to full
  size; the padding has `mask` False and only ignored labels."""
  decoded = _padded_eval_split(config, spec, builder)
  num_examples = len(decoded)
  first = decoded[0]
  padding = {
    "image": np.broadcast_to(preprocessing.PAD_COLOUR, first["image"].shape).copy(),
    "label": np.full_like(first["label"], spec.ignore_label),
    "size": np.zeros(2, np.int32),
    "base_scale": np.float32(1),
    "mask": np.bool_(False),
  }

  def example_or_padding(i: int) -> dict[str, np.ndarray]:
    return {**decoded[i], "mask": np.bool_(True)} if i < num_examples else padding

  total = math.ceil(num_examples / config.eval_batch_size) * config.eval_batch_size
  ds = grain.MapDataset.range(total).map(example_or_padding)
  ds = _this_process(ds, config.eval_batch_size, mesh, "config.eval_batch_size")
  return ds.to_iter_dataset(_read_options(config))


def eval_examples(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, count: int
) -> dict[str, np.ndarray]:
  """The first `count` examples of the eval split, padded as evaluation pads
  them and stacked: `image`, `label`, `size`. The same on every process."""
  ds = _padded_eval_split(config, spec, builder)
  examples = [ds[i] for i in range(min(count, len(ds)))]
  return {k: np.stack([e[k] for e in examples]) for k in ("image", "label", "size")}
