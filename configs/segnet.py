"""SegNet (Badrinarayanan et al. 2017): VGG16-BN encoder, max-unpooling decoder.

    python -m jaxseg.main --config=configs/segnet.py

By default a slim SegNet (an eighth of VGG16's channels) trains on the
embedded `synthetic_shapes` dataset on a CPU; `:paper` gives the paper's
network (29.4M parameters).
"""

import ml_collections

from configs import _datasets, default


def get_config(arg: str = ""):
  model, dataset = _datasets.parse_arg(arg, "segnet.py", ("paper",))
  config = default.get_config()
  config.model = ml_collections.ConfigDict(
    {"name": "segnet", "backbone": "vgg16_bn", "width_divisor": 8, "backbone_weights": ""}
  )
  if model == "paper":
    config.model.width_divisor = 1
  # SegNet has no skip features: the class of a pixel reaches it through 13
  # encoder and 13 decoder conv-BN layers. From scratch on the embedded data:
  # - on 64x64 crops (a 2x2 pool5 map) it stayed at the class prior for
  #   thousands of steps whatever the learning rate, weight decay or class
  #   weights; whole 96x96 images (3x3 pool5) leave the prior in ~300 steps;
  # - SGD then learns slowly (54.1 mIoU after 6,000 steps of 8), AdamW much
  #   faster (73.3 after the same 6,000 steps, 78.4 after these 7,500);
  # - an eighth of the channels costs 0.6x a quarter per step, for about the
  #   same loss after 1,200 steps.
  # The paper's recipe (SGD, lr 0.1, ImageNet encoder) is what the real-dataset
  # recipes (`:voc2012`, ...) use.
  config.crop_size = (96, 96)
  config.batch_size = 8
  config.optimizer = "adamw"
  config.learning_rate = 3e-3
  config.weight_decay = 0.01
  config.num_train_steps = 7500
  config.eval_every_steps = 2500
  return _datasets.apply(config, dataset)
