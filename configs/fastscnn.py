"""Fast-SCNN (Poudel et al. 2019): a real-time network trained from scratch.

    python -m jaxseg.main --config=configs/fastscnn.py

mmsegmentation's Fast-SCNN (1.40 M parameters for 19 classes, two auxiliary
heads weighted 0.4) needs no ImageNet weights: it is the network to train on
your own data. It trains on the embedded `synthetic_shapes` dataset by
default, and on a real one by argument (Cityscapes is the real-time
benchmark), with mmsegmentation's SGD at learning rate 0.12 and weight decay
4e-5:

    python -m jaxseg.main --config=configs/fastscnn.py:cityscapes
"""

import ml_collections

from configs import _datasets, default


def get_config(arg: str = ""):
  # The only model variant is the paper's; naming it changes nothing.
  _, dataset = _datasets.parse_arg(arg, "fastscnn.py", ("paper",))
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {
      "name": "fastscnn",
      "downsample_channels": (32, 48, 64),
      "block_channels": (64, 96, 128),
      "num_blocks": (3, 3, 3),
      "features": 128,
      "aux_channels": 32,  # Two auxiliary FCN heads; 0 for none.
    }
  )
  # About 12 minutes on a 2-core CPU (9 steps/s); real datasets set their own.
  config.num_train_steps = 6000
  config.eval_every_steps = 2000
  config = _datasets.apply(config, dataset)
  if dataset:
    config.learning_rate = 0.12
    config.weight_decay = 4e-5
  return config
