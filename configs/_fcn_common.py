"""What FCN-32s, FCN-16s and FCN-8s share; `configs/fcn*.py` pick the variant."""

import ml_collections

from configs import _datasets, default


def get_config(name: str, arg: str) -> ml_collections.ConfigDict:
  model, dataset = _datasets.parse_arg(arg, f"{name}.py", ("paper",))
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {
      "name": name,
      "width_divisor": 8,
      # From scratch, the plain VGG16 trunk could not fit even one batch of 8
      # images in 150 steps here and stayed at all-background through 2,000
      # training steps; with BatchNorm it fits that batch in 30 steps. The
      # paper's plain trunk is `:paper`.
      "batch_norm": True,
      "fc_features": 256,
      "dropout_rate": 0.5,
      "backbone_weights": "",  # VGG16 (VGG16-BN with batch_norm) from ImageNet.
    }
  )
  if model == "paper":
    config.model.width_divisor = 1
    config.model.batch_norm = False
    config.model.fc_features = 4096
  # Padding by 100 makes a 64x64 crop a 264x264 input to VGG16: FCN is the
  # slowest network here on small images, so it gets smaller batches.
  config.batch_size = 8
  config.learning_rate = 0.01
  config.num_train_steps = 2000
  config.eval_every_steps = 1000
  return _datasets.apply(config, dataset)
