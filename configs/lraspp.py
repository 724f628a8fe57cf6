"""LR-ASPP on MobileNetV3-Large (Howard et al. 2019): real-time segmentation.

    python -m jaxseg.main --config=configs/lraspp.py

torchvision's `lraspp_mobilenet_v3_large` (3.2 M parameters for 21 classes):
MobileNetV3-Large dilated to output stride 16, the Lite R-ASPP head on its
last map and on the first stride-8 block (`features4`). It trains on the
embedded `synthetic_shapes` dataset by default, and on a real one by argument
(Cityscapes is the real-time benchmark):

    python -m jaxseg.main --config=configs/lraspp.py:cityscapes

ImageNet weights for the trunk: torchvision's `mobilenet_v3_large-8738ca79.pth`
through `--config.model.backbone_weights=...` (see the README).
"""

import ml_collections

from configs import _datasets, default


def get_config(arg: str = ""):
  # The only model variant is the paper's; naming it changes nothing.
  _, dataset = _datasets.parse_arg(arg, "lraspp.py", ("mobilenet_v3_large",))
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {
      "name": "lraspp",
      "backbone": "mobilenet_v3_large",
      "output_stride": 16,
      "low_endpoint": "features4",
      "head_features": 128,
      "backbone_weights": "",  # See configs/default.py.
    }
  )
  # About 12 minutes on a 2-core CPU (6.5 steps/s); real datasets set their own.
  config.num_train_steps = 4500
  config.eval_every_steps = 1500
  return _datasets.apply(config, dataset)
