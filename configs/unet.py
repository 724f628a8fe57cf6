"""U-Net (Ronneberger et al. 2015): 4 down, 4 up, skip concatenation.

    python -m jaxseg.main --config=configs/unet.py

By default a slim U-Net (16 channels at the top instead of 64) trains on the
embedded `synthetic_shapes` dataset on a CPU; `:paper` gives the paper's
widths (64 doubling to 1024; 31.0M parameters).
"""

import ml_collections

from configs import _datasets, default


def get_config(arg: str = ""):
  model, dataset = _datasets.parse_arg(arg, "unet.py", ("paper",))
  config = default.get_config()
  config.model = ml_collections.ConfigDict({"name": "unet", "features": 16, "up_mode": "transpose"})
  if model == "paper":
    config.model.features = 64
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  return _datasets.apply(config, dataset)
