"""SegNet (Badrinarayanan et al. 2017): VGG16-BN encoder, max-unpooling decoder.

    python -m jaxseg.main --config=configs/segnet.py

By default a slim SegNet (a quarter of VGG16's channels) trains on the
embedded `synthetic_shapes` dataset on a CPU; `:paper` gives the paper's
network (29.4M parameters).
"""

import ml_collections

from configs import _datasets, default


def get_config(arg: str = ""):
  model, dataset = _datasets.parse_arg(arg, "segnet.py", ("paper",))
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {"name": "segnet", "width_divisor": 4, "backbone_weights": ""}
  )
  if model == "paper":
    config.model.width_divisor = 1
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  return _datasets.apply(config, dataset)
