"""SegFormer (Xie et al. 2021): a Mix Transformer and the all-MLP decoder.

    python -m jaxseg.main --config=configs/segformer.py          # MiT-B0
    python -m jaxseg.main --config=configs/segformer.py:b2,ade20k

`b0` .. `b5` are the paper's encoders (decoder 256 channels for B0/B1, 768
otherwise). On the embedded dataset B0 trains with AdamW in minutes on a
CPU; a real dataset takes the paper's recipe: AdamW, learning rate 6e-5,
weight decay 0.01, 1500 warm-up steps, then poly decay (power 1) over 160k
steps; Cityscapes at 1024×1024 crops, batch 8. (The paper's 10× learning
rate of the decoder is not applied.)

Published weights, for prediction or to fine-tune from:

    python -m jaxseg.predict --config=configs/segformer.py:b0,ade20k \
        --config.model.weights=hf:nvidia/segformer-b0-finetuned-ade-512-512 \
        --input=photo.jpg --output=out/
"""

import ml_collections

from configs import _datasets, default

VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5")


def get_config(arg: str = ""):
  variant, dataset = _datasets.parse_arg(arg, "segformer.py", VARIANTS)
  variant = variant or "b0"
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {
      "name": "segformer",
      "backbone": f"mit_{variant}",
      "decoder_features": 256 if variant in ("b0", "b1") else 768,
      "drop_path_rate": 0.1,
      "weights": "",  # A file, hf:ORG/NAME or torchvision:NAME (models.fetch).
    }
  )
  config.optimizer = "adamw"
  # Embedded dataset, from scratch: 1e-3 collapses to background; 4e-4 with a
  # 300-step warm-up reaches 31.6 mIoU in 3000 steps (~12 min on 2 CPU cores).
  config.learning_rate = 4e-4
  config.warmup_steps = 300
  config.weight_decay = 0.01
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  config = _datasets.apply(config, dataset)
  if dataset:
    paper_recipe(config, dataset)
  return config


def paper_recipe(config, dataset: str) -> None:
  """The SegFormer and mmsegmentation transformer recipe on a real dataset."""
  config.optimizer = "adamw"
  config.learning_rate = 6e-5
  config.end_learning_rate = 0.0
  config.lr_power = 1.0
  config.weight_decay = 0.01
  config.warmup_steps = 1500
  if dataset != "folder":  # A user's folder keeps its recipe's length.
    config.num_train_steps = 160_000
  if dataset == "cityscapes":
    config.crop_size = (1024, 1024)
  config.eval_every_steps = config.num_train_steps // 10
  config.checkpoint_every_steps = config.eval_every_steps
