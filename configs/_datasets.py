"""Real datasets by argument: `configs/psp.py:voc2012`, `configs/unet.py:folder`.

Each dataset's own recipe (crop, batch, schedule, sizes) is registered with
the dataset in `jaxseg.data.DATASETS`; `apply` sets it, plus what every
real-dataset recipe shares (mmsegmentation's: SGD with momentum, learning
rate 0.01 with poly decay, weight decay 5e-4, random resize 0.5-2.0×, crops
redrawn until no class covers more than 75%, photometric distortion).
"""

import ml_collections

from jaxseg.data import DATASETS

# Datasets with a training recipe: what a config's argument may name.
NAMES = tuple(name for name, spec in DATASETS.items() if spec.recipe is not None)
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
    elif token in NAMES and not dataset:
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
  config.data.name = dataset
  config.update_from_flattened_dict(DATASETS[dataset].recipe)
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
