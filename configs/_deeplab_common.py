"""What DeepLabV3 and DeepLabV3+ share; `configs/deeplabv3*.py` pick the variant."""

import ml_collections

from configs import _datasets, default

# The mobile network each variant takes besides ResNet-50/101.
MOBILE_BACKBONE = {"deeplabv3": "mobilenet_v3_large", "deeplabv3plus": "mobilenet_v2"}


def get_config(name: str, arg: str) -> ml_collections.ConfigDict:
  variants = ("resnet50", "resnet101", MOBILE_BACKBONE[name])
  model, dataset = _datasets.parse_arg(arg, f"{name}.py", variants)
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
  if model.startswith("mobilenet"):
    _mobile(config.model, model)
    # About 13 minutes on the embedded dataset on a 2-core CPU (4.4 and 3.5
    # steps/s); real datasets set their own schedule.
    config.num_train_steps = 3000 if name == "deeplabv3" else 2500
    config.eval_every_steps = 1000
  elif model:
    config.model.backbone = model
    config.model.backbone_width = 64
    config.model.output_stride = 16
    config.model.rates = (6, 12, 18)
    config.model.aspp_features = 256
    if name == "deeplabv3plus":
      config.model.low_level_features = 48
      config.model.decoder_features = 256
  return _datasets.apply(config, dataset)


def _mobile(model: ml_collections.ConfigDict, backbone: str) -> None:
  """The mobile settings, at output stride 16 with the trunk's own dilation.

  DeepLabV3 on MobileNetV3-Large is torchvision's `deeplabv3_mobilenet_v3_large`:
  ASPP rates (12, 24, 36) at output stride 16 and a 3×3 conv-BN-ReLU head
  after ASPP (11.0 M parameters for 21 classes). DeepLabV3+ on MobileNetV2:
  the paper's ASPP rates for output stride 16, stride-4 features (24
  channels) reduced to 48, and the paper's depthwise-separable decoder;
  mmsegmentation's `deeplabv3plus_m-v2-d8` is `--config.model.output_stride=8`
  with rates (12, 24, 36).
  """
  model.backbone = backbone
  del model["backbone_width"]  # A MobileNet has its paper's widths.
  model.multi_grid = ()  # Its own dilation rule.
  model.output_stride = 16
  model.aspp_features = 256
  if model.name == "deeplabv3":
    model.rates = (12, 24, 36)
    model.head_features = 256
  else:
    model.rates = (6, 12, 18)
    model.low_level_features = 48
    model.decoder_features = 256
    model.separable = True
