"""DeepLabV3 (Chen et al. 2017): ASPP on a dilated ResNet with multi-grid.

    python -m jaxseg.main --config=configs/deeplabv3.py

By default a slim dilated ResNet-18 at output stride 8 trains on the embedded
`synthetic_shapes` dataset on a CPU. Its 64×64 crops give 8×8 feature maps,
so the ASPP rates are scaled down to (2, 4, 6): the paper's (12, 24, 36) would
only read padding. The paper's network is one argument away:

    python -m jaxseg.main --config=configs/deeplabv3.py:resnet50   # or :resnet101

(ResNet-50/101 at output stride 16, multi-grid (1, 2, 4), rates (6, 12, 18)).
The real-time network is torchvision's `deeplabv3_mobilenet_v3_large`:

    python -m jaxseg.main --config=configs/deeplabv3.py:mobilenet_v3_large,cityscapes
"""

from configs import _deeplab_common


def get_config(arg: str = ""):
  return _deeplab_common.get_config("deeplabv3", arg)
