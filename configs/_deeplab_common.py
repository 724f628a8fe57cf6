"""What DeepLabV3 and DeepLabV3+ share; `configs/deeplabv3*.py` pick the variant."""

import ml_collections

from configs import _datasets, default


def get_config(name: str, arg: str) -> ml_collections.ConfigDict:
  model, dataset = _datasets.parse_arg(arg, f"{name}.py", ("resnet50", "resnet101"))
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {
      "name": name,
      "backbone": "resnet18",
      "backbone_width": 16,
      "output_stride": 8,
      "multi_grid": (1, 2, 4),
      "rates": (2, 4, 6),
      "aspp_features": 64,
      "low_level_features": 16,
      "decoder_features": 64,
      "remat": False,
      "backbone_weights": "",  # See configs/default.py.
    }
  )
  if name == "deeplabv3":
    del config.model["low_level_features"]
    del config.model["decoder_features"]
  if model:
    config.model.backbone = model
    config.model.backbone_width = 64
    config.model.output_stride = 16
    config.model.rates = (6, 12, 18)
    config.model.aspp_features = 256
    if name == "deeplabv3plus":
      config.model.low_level_features = 48
      config.model.decoder_features = 256
  return _datasets.apply(config, dataset)
