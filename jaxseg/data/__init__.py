"""Dataset registry: a name in `config.data.name` -> where it lives and what its labels mean."""

import dataclasses
import importlib

import numpy as np

from jaxseg.data import labels


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to read one dataset and what its labels mean.

  Attributes:
    tfds_name: TFDS builder name (a builder config comes from `config.data.variant`).
    class_names: one name per class; `len(class_names)` is the number of classes.
    palette: `[num_classes, 3]` uint8 colours for pictures.
    image_key: feature holding the uint8 RGB image.
    label_key: feature holding the label map (`[H, W]` or `[H, W, 1]`).
    train_split: split trained on.
    eval_split: split evaluated on.
    builder_module: module to import so that TFDS knows a builder jaxseg owns.
    ignore_label: label value excluded from loss and metrics.
  """

  tfds_name: str
  class_names: tuple[str, ...]
  palette: np.ndarray
  image_key: str = "image"
  label_key: str = "segmentation_mask"
  train_split: str = "train"
  eval_split: str = "validation"
  builder_module: str | None = None
  ignore_label: int = labels.IGNORE_LABEL

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


DATASETS: dict[str, DatasetSpec] = {
  "synthetic_shapes": DatasetSpec(
    tfds_name="synthetic_shapes",
    class_names=labels.SYNTHETIC_SHAPES_CLASSES,
    palette=labels.SYNTHETIC_SHAPES_PALETTE,
    builder_module="jaxseg.data.builders.synthetic_shapes",
  ),
}


def get_dataset_spec(name: str) -> DatasetSpec:
  """Returns the registered dataset `name`; raises naming `config.data.name`."""
  if name not in DATASETS:
    raise ValueError(f"config.data.name={name!r} is not a known dataset; known: {sorted(DATASETS)}")
  spec = DATASETS[name]
  if spec.builder_module:
    importlib.import_module(spec.builder_module)  # Registers the TFDS builder.
  return spec
