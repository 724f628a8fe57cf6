"""UPerNet (Xiao et al. 2018) on ConvNeXt or Swin.

    python -m jaxseg.main --config=configs/upernet.py                 # ConvNeXt-T
    python -m jaxseg.main --config=configs/upernet.py:swin_tiny,ade20k

Backbones `convnext_tiny|small|base`, `swin_tiny|small|base`; the decoder has
512 channels and an auxiliary FCN head (256, weight 0.4) on the stride-16
map, as mmsegmentation's `upernet_convnext_*` and `upernet_swin_*`. On the
embedded dataset the full network trains for 320 steps (~15 min on a 2-core
CPU; it is far from converged there: ~26 mIoU); a real dataset
takes mmsegmentation's recipe: AdamW with 1500 warm-up steps and poly decay
(power 1) over 160k steps, learning rate 1e-4 and weight decay 0.05 for
ConvNeXt, 6e-5 and 0.01 for Swin; stochastic depth 0.3 (0.4 for ConvNeXt-B).
(Layer-wise learning-rate decay is not applied.)

Published weights: `--config.model.weights=hf:openmmlab/upernet-convnext-tiny`
(`configs/upernet.py:convnext_tiny,ade20k`).
"""

import ml_collections

from configs import _datasets, default

VARIANTS = (
  "convnext_tiny", "convnext_small", "convnext_base", "swin_tiny", "swin_small", "swin_base"
)  # fmt: skip


def get_config(arg: str = ""):
  variant, dataset = _datasets.parse_arg(arg, "upernet.py", VARIANTS)
  variant = variant or "convnext_tiny"
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {
      "name": "upernet",
      "backbone": variant,
      "head_features": 512,
      "aux_channels": 256,
      "drop_path_rate": 0.4 if variant == "convnext_base" else 0.3,
      "weights": "",  # A file, hf:ORG/NAME or torchvision:NAME (models.fetch).
    }
  )
  # Embedded dataset, from scratch: a 60M-parameter network at ~2.5 s a step
  # on 2 CPU cores; 350 steps of this reached 25.8 mIoU in 15.8 min (ConvNeXt-T).
  config.optimizer = "adamw"
  config.learning_rate = 3e-4
  config.warmup_steps = 50
  config.weight_decay = 0.05 if variant.startswith("convnext") else 0.01
  config.num_train_steps = 320
  config.eval_every_steps = 320
  config = _datasets.apply(config, dataset)
  if dataset:
    config.optimizer = "adamw"
    config.learning_rate = 1e-4 if variant.startswith("convnext") else 6e-5
    config.weight_decay = 0.05 if variant.startswith("convnext") else 0.01
    config.end_learning_rate = 0.0
    config.lr_power = 1.0
    config.warmup_steps = 1500
    if dataset != "folder":  # A user's folder keeps its recipe's length.
      config.num_train_steps = 160_000
    config.eval_every_steps = max(1, config.num_train_steps // 10)
    config.checkpoint_every_steps = config.eval_every_steps
  return config
