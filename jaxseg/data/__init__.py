"""Dataset registry: a name in `config.data.name` -> where it lives, what its
labels mean, and its standard training recipe.

The recipes follow mmsegmentation's configs for these datasets (its 512×512
VOC-aug 20k, Cityscapes 512×1024 40k and ADE20K 512×512 80k schedules); a
model config takes one by argument (`configs/psp.py:voc2012`) and
`configs/_datasets.py` applies it, together with what every real dataset
shares: SGD with momentum 0.9, learning rate 0.01 with poly decay, weight
decay 5e-4, random resize 0.5-2.0× of the base scale, random crop with
`cat_max_ratio` 0.75, flip and photometric distortion.

| name | train split | crop | batch | steps | base scale (long, short) |
|---|---|---|---|---|---|
| voc2012 | train_aug (needs SBD) | 512×512 | 16 | 20,000 | 2048, 512 |
| cityscapes | train | 512×1024 | 8 | 40,000 | 2048, 1024 |
| ade20k | train | 512×512 | 16 | 80,000 | 2048, 512 |
| oxford_iiit_pet | train | 512×512 | 16 | 20,000 | 2048, 512 |
| folder | your images | 256×256 | 8 | 4,000 | the images' own size |

Validation images are scored at their own resolution, never resized
(`config.evaluation`).
"""

import dataclasses
import importlib
from typing import Any

import ml_collections
import numpy as np

from jaxseg import errors
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
    recipe: its standard training recipe, config fields by dotted key
      (`"data.max_size"`, `"crop_size"` ...); None: no recipe (the embedded
      dataset, whose settings are `configs/default.py`'s).
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
  recipe: dict[str, Any] | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _recipe(*, crop, batch, steps, max_size, base_size, **more) -> dict[str, Any]:
  """A training recipe as config fields: crops of `crop`, `batch` per step for
  `steps` steps; images padded to `max_size` for training and evaluation;
  `base_size` (long, short) is the scale of resize ratio 1; `more` by dotted key."""
  return {
    "data.variant": "",
    "data.max_size": max_size,
    "crop_size": crop,
    "batch_size": batch,
    "num_train_steps": steps,
    "augment.base_size": base_size,
    **more,
  }


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
    recipe=_recipe(
      crop=(512, 512),
      batch=16,
      steps=20_000,
      max_size=(512, 512),
      base_size=(2048, 512),
      **{"data.variant": "aug", "data.train_split": "train_aug"},
    ),
  ),
  "cityscapes": DatasetSpec(
    tfds_name="cityscapes",
    class_names=labels.CITYSCAPES_CLASSES,
    palette=labels.CITYSCAPES_PALETTE,
    image_key="image_left",
    label_key="segmentation_label",
    label_map=labels.CITYSCAPES_LABEL_MAP,
    recipe=_recipe(
      crop=(512, 1024),
      batch=8,
      steps=40_000,
      max_size=(1024, 2048),
      base_size=(2048, 1024),
      **{"data.variant": "semantic_segmentation", "eval_batch_size": 8},
    ),
  ),
  "ade20k": DatasetSpec(
    tfds_name="ade20k",
    class_names=labels.ADE20K_CLASSES,
    palette=labels.ADE20K_PALETTE,
    builder_module="jaxseg.data.builders.ade20k",
    label_map=labels.ADE20K_LABEL_MAP,
    recipe=_recipe(
      crop=(512, 512), batch=16, steps=80_000, max_size=(1024, 1024), base_size=(2048, 512)
    ),
  ),
  "oxford_iiit_pet": DatasetSpec(
    tfds_name="oxford_iiit_pet",
    class_names=labels.OXFORD_PET_CLASSES,
    palette=labels.OXFORD_PET_PALETTE,
    eval_split="test",
    label_map=labels.OXFORD_PET_LABEL_MAP,
    recipe=_recipe(
      crop=(512, 512), batch=16, steps=20_000, max_size=(1024, 1024), base_size=(2048, 512)
    ),
  ),
  # A user's directory (`config.data.folder`): its classes and builder come
  # from the directory itself (`get_dataset_spec`).
  "folder": DatasetSpec(
    tfds_name="user_folder",
    class_names=(),
    palette=np.zeros((0, 3), np.uint8),
    recipe=_recipe(crop=(256, 256), batch=8, steps=4_000, max_size=(512, 512), base_size=()),
  ),
}
FOLDER = "folder"


def get_dataset_spec(data: ml_collections.ConfigDict | str) -> DatasetSpec:
  """The dataset `config.data` (or a registered name) describes; raises naming
  `config.data.name` (or `config.data.folder`)."""
  name = data if isinstance(data, str) else data.name
  if name == FOLDER:
    if isinstance(data, str) or not data.get("folder"):
      raise errors.InvalidInput("config.data.name='folder' needs config.data.folder=DIR")
    from jaxseg.data.builders import folder

    meta = folder.read_meta(data.folder)
    return dataclasses.replace(
      DATASETS[FOLDER],
      tfds_name=f"user_folder/{folder.builder_config(data.folder).name}",
      class_names=meta.class_names,
      palette=meta.palette,
    )
  if name not in DATASETS:
    known = sorted(DATASETS)
    raise errors.InvalidInput(f"config.data.name={name!r} is not a known dataset; known: {known}")
  spec = DATASETS[name]
  if spec.builder_module:
    importlib.import_module(spec.builder_module)  # Registers the TFDS builder.
  return spec
