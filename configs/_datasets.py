"""Real datasets and their standard training recipes; model configs take them
by argument (`configs/psp.py:voc2012`, `configs/unet.py:folder`).

The recipes follow mmsegmentation's configs for these datasets (its 512×512
VOC-aug 20k, Cityscapes 512×1024 40k and ADE20K 512×512 80k schedules): SGD
with momentum 0.9, learning rate 0.01 with poly decay, weight decay 5e-4,
random resize with ratio 0.5-2.0 of the dataset's base scale, random crop with
`cat_max_ratio` 0.75, flip and photometric distortion.

| argument | train split | crop | batch | steps | base scale (long, short) |
|---|---|---|---|---|---|
| voc2012 | train_aug (needs SBD) | 512×512 | 16 | 20,000 | 2048, 512 |
| cityscapes | train | 512×1024 | 8 | 40,000 | 2048, 1024 |
| ade20k | train | 512×512 | 16 | 80,000 | 2048, 512 |
| oxford_iiit_pet | train | 512×512 | 16 | 20,000 | 2048, 512 |
| folder | your images | 256×256 | 8 | 4,000 | the images' own size |

Validation images are scored at their own resolution, padded to
`config.data.eval_size` (which must hold the largest of them).
"""

import ml_collections

# name -> (data fields, training fields, augment fields)
RECIPES = {
  "voc2012": (
    {"variant": "aug", "train_split": "train_aug", "max_size": (512, 512), "eval_size": (512, 512)},
    {"crop_size": (512, 512), "batch_size": 16, "num_train_steps": 20_000},
    {"base_size": (2048, 512)},
  ),
  "cityscapes": (
    {
      "variant": "semantic_segmentation",
      "max_size": (1024, 2048),
      "eval_size": (1024, 2048),
    },
    {"crop_size": (512, 1024), "batch_size": 8, "num_train_steps": 40_000, "eval_batch_size": 8},
    {"base_size": (2048, 1024)},
  ),
  "ade20k": (
    {"variant": "", "max_size": (1024, 1024), "eval_size": (1024, 1024)},
    {"crop_size": (512, 512), "batch_size": 16, "num_train_steps": 80_000},
    {"base_size": (2048, 512)},
  ),
  "oxford_iiit_pet": (
    {"variant": "", "max_size": (1024, 1024), "eval_size": (1024, 1024)},
    {"crop_size": (512, 512), "batch_size": 16, "num_train_steps": 20_000},
    {"base_size": (2048, 512)},
  ),
  "folder": (
    {"variant": "", "max_size": (512, 512), "eval_size": (512, 512)},
    {"crop_size": (256, 256), "batch_size": 8, "num_train_steps": 4_000},
    {"base_size": ()},
  ),
}
NAMES = tuple(RECIPES)
# Datasets for which a config's argument-less model is too small to mean
# anything: they get the paper's network unless the argument names one.
WANT_PAPER_MODEL = ("voc2012", "cityscapes", "ade20k", "oxford_iiit_pet")


def parse_arg(arg: str, file: str, model_variants: tuple[str, ...]) -> tuple[str, str]:
  """`"resnet50,voc2012"` -> `("resnet50", "voc2012")`; either part may be absent.

  A real dataset with no model variant picks `model_variants[0]`, the paper's network.
  """
  model, dataset = "", ""
  for token in filter(None, arg.split(",")):
    if token in model_variants and not model:
      model = token
    elif token in RECIPES and not dataset:
      dataset = token
    else:
      raise ValueError(
        f"configs/{file} takes a model variant {list(model_variants)} and/or a dataset "
        f"{list(NAMES)}, comma-separated; not {token!r} in {arg!r}"
      )
  if dataset in WANT_PAPER_MODEL and not model:
    model = model_variants[0]
  return model, dataset


def apply(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """Switches `config` to `dataset` with its standard recipe; "" changes nothing."""
  if not dataset:
    return config
  data, training, augment = RECIPES[dataset]
  config.data.name = dataset
  for key, value in data.items():
    setattr(config.data, key, value)
  for key, value in training.items():
    setattr(config, key, value)
  for key, value in augment.items():
    setattr(config.augment, key, value)
  config.augment.scale_range = (0.5, 2.0)
  config.augment.cat_max_ratio = 0.75
  config.augment.photometric = True
  config.optimizer = "sgd"
  config.learning_rate = 0.01
  config.weight_decay = 5e-4
  config.warmup_steps = 0
  config.eval_every_steps = max(1, config.num_train_steps // 10)
  config.checkpoint_every_steps = config.eval_every_steps
  return config
