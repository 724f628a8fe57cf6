"""torchvision's published segmentation networks, to predict with or fine-tune from.

    python -m jaxseg.predict --config=configs/torchvision.py:deeplabv3_resnet50 \
        --input=photo.jpg --output=out/

Each variant is jaxseg's network computing what torchvision's does, with its
COCO-trained weights (VOC's 21 classes) named by `config.model.weights`
(`torchvision:NAME`, downloaded once into the cache, `models.fetch`):

- `deeplabv3_resnet50`, `deeplabv3_resnet101`: DeepLabV3 on a ResNet dilated
  to output stride 8 (no multi-grid), ASPP 12/24/36, a 3×3 conv-BN-ReLU head
  of 256, an auxiliary FCN head on stage 3;
- `fcn_resnet50`, `fcn_resnet101`: the same trunk with torchvision's FCN head
  (3×3 conv-BN-ReLU of 512, dropout, 1×1): PSPNet's head without a pyramid;
- `deeplabv3_mobilenet_v3_large`, `lraspp_mobilenet_v3_large`: the real-time
  networks (`configs/deeplabv3.py:mobilenet_v3_large`, `configs/lraspp.py`).

Training from them fine-tunes on the VOC recipe (`configs/torchvision.py:
deeplabv3_resnet50,voc2012`) or any dataset by argument; the classifiers are
re-initialised for another number of classes.
"""

import ml_collections

from configs import _datasets, default

VARIANTS = (
  "deeplabv3_resnet50", "deeplabv3_resnet101", "fcn_resnet50", "fcn_resnet101",
  "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
)  # fmt: skip


def get_config(arg: str = ""):
  variant, dataset = _datasets.parse_arg(arg, "torchvision.py", VARIANTS)
  variant = variant or VARIANTS[0]
  config = default.get_config()
  config.data.name = "voc2012"  # Its 21 classes, in torchvision's order.
  config.crop_size = (512, 512)
  trunk = variant.split("_", 1)[1]
  weights = f"torchvision:{variant}"
  if variant.startswith("lraspp"):
    model = {"name": "lraspp", "backbone": trunk, "output_stride": 16}
  elif trunk.startswith("mobilenet"):
    model = {
      "name": "deeplabv3", "backbone": trunk, "output_stride": 16, "multi_grid": (),
      "rates": (12, 24, 36), "head_features": 256, "aux_channels": 10, "aux_endpoint": "features4",
    }  # fmt: skip
  elif variant.startswith("deeplabv3"):
    model = {
      "name": "deeplabv3", "backbone": trunk, "output_stride": 8, "multi_grid": (),
      "rates": (12, 24, 36), "head_features": 256, "aux_channels": 256,
    }  # fmt: skip
  else:  # FCN: no pyramid, a 512-channel 3×3 unit, the auxiliary head on stage 3.
    model = {
      "name": "pspnet", "backbone": trunk, "output_stride": 8, "bins": (),
      "head_channels": 512, "aux_channels": 256,
    }  # fmt: skip
  config.model = ml_collections.ConfigDict({**model, "weights": weights})
  return _datasets.apply(config, dataset)
