"""Helpers shared by tests."""

from configs import default


def tiny_config(data_dir: str, **overrides):
  """The default experiment shrunk to seconds: tiny data, tiny PSPNet."""
  config = default.get_config()
  config.data.variant = "tiny"
  config.data.data_dir = data_dir
  config.model.backbone_width = 8
  config.model.head_channels = 16
  config.model.aux_channels = 8
  config.crop_size = (64, 64)
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 4
  config.warmup_steps = 1
  config.log_every_steps = 1
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 2
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config
