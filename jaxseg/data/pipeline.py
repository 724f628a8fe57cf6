"""Input pipeline: grain over `tfds.data_source` (ArrayRecord), one shard per process.

The host only decodes, checks and batches; augmentation runs on the device
(`jaxseg.data.augment`). Batch `t` of the global stream holds examples
`[t*B, (t+1)*B)` of the shuffled, repeated split, and process `p` reads the
contiguous slice `p*B/P .. (p+1)*B/P` of it, so a global batch is the same
whatever the number of processes, and a run's data order is a function of the
seed alone. The iterator's state goes into every checkpoint.

Host batches are dicts of NumPy arrays: `image` uint8 `[b, H, W, 3]`, `label`
int32 `[b, H, W]`, and for evaluation `mask` bool `[b]` (False for the padding
that completes the last batch, which is never dropped).
"""

import logging
import math

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from jaxseg import sharding
from jaxseg.data import DatasetSpec, get_dataset_spec


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
  spec = get_dataset_spec(config.data.name)
  name = spec.tfds_name + (f"/{config.data.variant}" if config.data.variant else "")
  builder = tfds.builder(name, data_dir=config.data.data_dir or None)
  for turn in range(2):
    if (jax.process_index() == 0) == (turn == 0):
      builder.download_and_prepare(file_format="array_record")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"jaxseg:prepare:{turn}")
  return spec, builder


class _DecodeAndCheck:
  """TFDS example -> `{image, label}`, refusing labels the model cannot learn."""

  def __init__(self, spec: DatasetSpec, dataset: str, split: str, num_records: int):
    self.spec, self.dataset, self.split, self.num_records = spec, dataset, split, num_records

  def __call__(self, index: int, example: dict) -> dict[str, np.ndarray]:
    image = np.asarray(example[self.spec.image_key])
    label = np.asarray(example[self.spec.label_key])
    if label.ndim == 3:
      label = label[..., 0]
    where = f"dataset {self.dataset!r} split {self.split!r} example {index % self.num_records}"
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise ValueError(f"{where}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[:2] != label.shape:
      raise ValueError(f"{where}: image size {image.shape[:2]} != label size {label.shape}")
    label = label.astype(np.int32)
    bad = (label >= self.spec.num_classes) | (label < 0)
    bad &= label != self.spec.ignore_label
    if bad.any():
      raise ValueError(
        f"{where}: label values {sorted(np.unique(label[bad]).tolist())} are outside "
        f"[0, {self.spec.num_classes}) and not the ignore label {self.spec.ignore_label}"
      )
    return {"image": image, "label": label}


def _decoded(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, split: str
) -> grain.MapDataset:
  source = builder.as_data_source(split)
  check = _DecodeAndCheck(spec, config.data.name, split, len(source))
  return grain.MapDataset.source(source).map_with_index(check)


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
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, mesh
) -> grain.DatasetIterator:
  """Endless, shuffled (reshuffled every epoch) host batches of the train split."""
  ds = _decoded(config, spec, builder, config.data.train_split or spec.train_split)
  ds = ds.shuffle(seed=config.seed).repeat()
  ds = _this_process(ds, config.batch_size, mesh, "config.batch_size")
  return iter(ds.to_iter_dataset(_read_options(config)))


def eval_batches(
  config: ml_collections.ConfigDict, spec: DatasetSpec, builder, mesh
) -> grain.IterDataset:
  """Every example of the eval split once, in order, in batches padded to full
  size; the padding has `mask` False and only ignored labels."""
  decoded = _decoded(config, spec, builder, config.data.eval_split or spec.eval_split)
  num_examples = len(decoded)
  first = decoded[0]
  padding = {
    "image": np.zeros_like(first["image"]),
    "label": np.full_like(first["label"], spec.ignore_label),
    "mask": np.bool_(False),
  }

  def example_or_padding(i: int) -> dict[str, np.ndarray]:
    return {**decoded[i], "mask": np.bool_(True)} if i < num_examples else padding

  total = math.ceil(num_examples / config.eval_batch_size) * config.eval_batch_size
  ds = grain.MapDataset.range(total).map(example_or_padding)
  ds = _this_process(ds, config.eval_batch_size, mesh, "config.eval_batch_size")
  return ds.to_iter_dataset(_read_options(config))
