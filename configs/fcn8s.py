"""FCN-8s (Long et al. 2015) on VGG16.

    python -m jaxseg.main --config=configs/fcn8s.py

By default a slim VGG16 (an eighth of the channels, 256-channel fc6/fc7)
trains on the embedded `synthetic_shapes` dataset on a CPU; `:paper` gives the
paper's network (full VGG16, 4096-channel fc6/fc7, 134M parameters):

    python -m jaxseg.main --config=configs/fcn8s.py:paper
"""

from configs import _fcn_common


def get_config(arg: str = ""):
  return _fcn_common.get_config("fcn8s", arg)
