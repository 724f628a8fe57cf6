"""DeepLabV3+ (Chen et al. 2018): DeepLabV3 plus a stride-4 decoder.

    python -m jaxseg.main --config=configs/deeplabv3plus.py

By default a slim dilated ResNet-18 at output stride 8 trains on the embedded
`synthetic_shapes` dataset on a CPU. Its 64×64 crops give 8×8 feature maps,
so the ASPP rates are scaled down to (2, 4, 6): the paper's (12, 24, 36) would
only read padding. The paper's network is one argument away:

    python -m jaxseg.main --config=configs/deeplabv3plus.py:resnet50   # or :resnet101

(ResNet-50/101 at output stride 16, multi-grid (1, 2, 4), rates (6, 12, 18)).
The mobile network, MobileNetV2 at output stride 16 with a separable decoder:

    python -m jaxseg.main --config=configs/deeplabv3plus.py:mobilenet_v2,cityscapes
"""

from configs import _deeplab_common


def get_config(arg: str = ""):
  return _deeplab_common.get_config("deeplabv3plus", arg)
