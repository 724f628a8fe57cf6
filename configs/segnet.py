"""SegNet (Badrinarayanan et al. 2017): VGG16-BN encoder, max-unpooling decoder.

    python -m jaxseg.main --config=configs/segnet.py

By default a slim SegNet (a quarter of VGG16's channels) trains on the
embedded `synthetic_shapes` dataset on a CPU; `:paper` gives the paper's
network (29.4M parameters).
"""

import ml_collections

from configs import default


def get_config(arg: str = ""):
  config = default.get_config()
  config.model = ml_collections.ConfigDict({"name": "segnet", "width_divisor": 4})
  if arg == "paper":
    config.model.width_divisor = 1
  elif arg:
    raise ValueError(f"configs/segnet.py takes '' or 'paper', not {arg!r}")
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  return config
