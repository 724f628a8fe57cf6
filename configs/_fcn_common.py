"""What FCN-32s, FCN-16s and FCN-8s share; `configs/fcn*.py` pick the variant."""

import ml_collections

from configs import default


def get_config(name: str, arg: str) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {"name": name, "width_divisor": 8, "fc_features": 256, "dropout_rate": 0.5}
  )
  if arg == "paper":
    config.model.width_divisor = 1
    config.model.fc_features = 4096
  elif arg:
    raise ValueError(f"configs/{name}.py takes '' or 'paper', not {arg!r}")
  # Padding by 100 makes a 64x64 crop a 264x264 input to VGG16: FCN is the
  # slowest network here on small images, so it gets smaller batches.
  config.batch_size = 8
  config.learning_rate = 0.01
  config.num_train_steps = 2000
  config.eval_every_steps = 1000
  return config
