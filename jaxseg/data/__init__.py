"""Dataset registry: a name in `config.data.name` -> where it lives and what its labels mean."""

import dataclasses
import importlib

import ml_collections
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
    label_map: lookup table from the stored label values to training ids
      (values mapped to `ignore_label` are ignored), or None to use them as they are.
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
  label_map: np.ndarray | None = None

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
  "voc2012": DatasetSpec(
    tfds_name="voc2012",
    class_names=labels.VOC_CLASSES,
    palette=labels.VOC_PALETTE,
    builder_module="jaxseg.data.builders.voc2012",
  ),
  "cityscapes": DatasetSpec(
    tfds_name="cityscapes",
    class_names=labels.CITYSCAPES_CLASSES,
    palette=labels.CITYSCAPES_PALETTE,
    image_key="image_left",
    label_key="segmentation_label",
    label_map=labels.CITYSCAPES_LABEL_MAP,
  ),
  "ade20k": DatasetSpec(
    tfds_name="ade20k",
    class_names=labels.ADE20K_CLASSES,
    palette=labels.ADE20K_PALETTE,
    builder_module="jaxseg.data.builders.ade20k",
    label_map=labels.ADE20K_LABEL_MAP,
  ),
  "oxford_iiit_pet": DatasetSpec(
    tfds_name="oxford_iiit_pet",
    class_names=labels.OXFORD_PET_CLASSES,
    palette=labels.OXFORD_PET_PALETTE,
    eval_split="test",
    label_map=labels.OXFORD_PET_LABEL_MAP,
  ),
}
# `folder` is a user's directory: its spec is read from the directory itself.
FOLDER = "folder"


def get_dataset_spec(data: ml_collections.ConfigDict | str) -> DatasetSpec:
  """The dataset `config.data` (or a registered name) describes; raises naming
  `config.data.name` (or `config.data.folder`)."""
  name = data if isinstance(data, str) else data.name
  if name == FOLDER:
    if isinstance(data, str) or not data.get("folder"):
      raise ValueError("config.data.name='folder' needs config.data.folder=DIR")
    from jaxseg.data.builders import folder

    meta = folder.read_meta(data.folder)
    return DatasetSpec(
      tfds_name=f"user_folder/{folder.builder_config(data.folder).name}",
      class_names=meta.class_names,
      palette=meta.palette,
    )
  if name not in DATASETS:
    known = sorted([*DATASETS, FOLDER])
    raise ValueError(f"config.data.name={name!r} is not a known dataset; known: {known}")
  spec = DATASETS[name]
  if spec.builder_module:
    importlib.import_module(spec.builder_module)  # Registers the TFDS builder.
  return spec
