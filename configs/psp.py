"""PSPNet (Zhao et al. 2017) with an auxiliary head; the README's first command.

    python -m jaxseg.main --config=configs/psp.py

By default a small dilated ResNet-18 PSPNet (output stride 8, pyramid bins
1, 2, 3, 6, auxiliary head weighted 0.4) trains on the embedded
`synthetic_shapes` dataset in minutes on a laptop CPU. The paper's network is
one argument away:

    python -m jaxseg.main --config=configs/psp.py:resnet50    # or :resnet101

which sets a full-width ResNet-50 (or 101) trunk with the paper's 512-channel
head and 256-channel auxiliary head.
"""

from configs import _datasets, default


def get_config(arg: str = ""):
  model, dataset = _datasets.parse_arg(arg, "psp.py", ("resnet50", "resnet101"))
  config = default.get_config()
  if model:
    config.model.backbone = model
    config.model.backbone_width = 64
    config.model.head_channels = 512
    config.model.aux_channels = 256
  return _datasets.apply(config, dataset)
