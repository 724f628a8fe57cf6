"""U-Net (Ronneberger et al. 2015): 4 down, 4 up, skip concatenation.

    python -m jaxseg.main --config=configs/unet.py

By default a slim U-Net (16 channels at the top instead of 64) trains on the
embedded `synthetic_shapes` dataset on a CPU; `:paper` gives the paper's
widths (64 doubling to 1024; 31.0M parameters).
"""

import ml_collections

from configs import default


def get_config(arg: str = ""):
  config = default.get_config()
  config.model = ml_collections.ConfigDict({"name": "unet", "features": 16, "up_mode": "transpose"})
  if arg == "paper":
    config.model.features = 64
  elif arg:
    raise ValueError(f"configs/unet.py takes '' or 'paper', not {arg!r}")
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  return config
