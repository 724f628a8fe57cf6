"""Defaults every experiment starts from; a config file overrides a few fields.

    python -m jaxseg.main --config=configs/default.py

Trains a small PSPNet on the embedded `synthetic_shapes` dataset. Experiments
live in sibling files (`configs/psp.py`, ...) that call `get_config()` here.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Fine-tune from another jaxseg run: its workdir (latest checkpoint) or one
  # checkpoint directory. Arrays whose shapes differ (a classifier for other
  # classes) keep their random initialisation; takes precedence over
  # model.backbone_weights. Only a fresh run reads it; a resumed one continues.
  config.init_from = ""
  # Arrays of the model that the checkpoint lacks keep their initialisation
  # (listed in the log) instead of being an error: new layers, as in the FCN
  # paper's staged training (FCN-16s from a trained FCN-32s).
  config.init_from_new_layers = False

  config.data = ml_collections.ConfigDict()
  config.data.name = "synthetic_shapes"  # A key of jaxseg.data.DATASETS.
  config.data.variant = "default"  # TFDS builder config; "" for the builder's default.
  config.data.data_dir = ""  # "" -> $TFDS_DATA_DIR or ~/tensorflow_datasets.
  # Where datasets that cannot be downloaded (VOC, Cityscapes) are found;
  # "" -> $JAXSEG_MANUAL_DIR, else <data_dir>/downloads/manual.
  config.data.manual_dir = ""
  config.data.folder = ""  # With name "folder": DIR with images/, masks/, classes.json.
  # Bands of the images: 3 for RGB, e.g. 4 for RGB + near-infrared TIFFs.
  config.data.channels = 3
  # Per-band standardisation (x - mean) / std, in the images' units. () -> for
  # uint8 RGB ImageNet's; otherwise the dataset's own (python -m
  # jaxseg.data.stats). Training fills in what it used, as it does `dtype`,
  # the images' sample type, so evaluation, predict and export use the same.
  config.data.mean = ()
  config.data.std = ()
  config.data.dtype = ""
  config.data.train_split = ""  # "" -> the dataset's own train split.
  config.data.eval_split = ""  # "" -> the dataset's own validation split.
  # Training batches hold one shape: images are padded to max_size (larger
  # ones downscaled to fit). () -> the first example's size.
  config.data.max_size = ()
  config.data.num_threads = 2  # Host threads decoding examples.
  config.data.prefetch_batches = 4

  config.model = ml_collections.ConfigDict()
  config.model.name = "pspnet"  # A key of jaxseg.models.MODELS; other fields go to it.
  config.model.backbone = "resnet18"
  config.model.output_stride = 8
  config.model.backbone_width = 16
  config.model.head_channels = 64
  config.model.aux_channels = 32
  # An ImageNet backbone to start from: a torchvision/timm .pth or .safetensors
  # file, or one written by `python -m jaxseg.convert` ("": random init).
  config.model.backbone_weights = ""
  # Recompute backbone activations in the backward pass: less activation memory
  # for about one more forward pass of compute (ResNet backbones).
  config.model.remat = False
  # Compute dtype: "float32", or "bfloat16" (parameters, optimizer state, loss
  # and metrics stay float32).
  config.dtype = "float32"
  # A step whose loss or gradient is NaN or infinite stops the run, naming the
  # step and the likely cause; True skips such steps (state unchanged), counted.
  config.skip_nonfinite_steps = False
  # What runs convolutions on the CPU backend: "auto" (oneDNN where its library
  # was built at install and the process has one CPU device, else XLA),
  # "onednn" (an error where it was not built) or "xla". GPU, TPU and exported
  # programs always use XLA's.
  config.conv_backend = "auto"

  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1  # Devices on the data axis; -1: all of them.
  # Fully sharded data parallel: split parameters and optimizer state over the
  # data axis too (arrays of at least fsdp_min_size elements), for backbones
  # too large to replicate on every device.
  config.mesh.fsdp = False
  config.mesh.fsdp_min_size = 2**14

  # Random 64x64 crops of the 96x96 images; evaluation sees whole images.
  config.crop_size = (64, 64)
  config.augment = ml_collections.ConfigDict()
  # The shapes already vary in size; random rescaling slowed learning here.
  config.augment.scale_range = (1.0, 1.0)
  config.augment.flip = True
  # mmsegmentation's img_scale (long, short): a scale ratio of 1 fits the image
  # inside it. () -> ratio 1 is the image's own size.
  config.augment.base_size = ()
  config.augment.cat_max_ratio = 1.0  # < 1: redraw crops dominated by one class.
  config.augment.photometric = False  # Brightness, contrast, saturation, hue.

  config.loss = ml_collections.ConfigDict()
  # The main head's loss: the weighted sum of these terms (0 leaves one out;
  # README "Losses"). Auxiliary heads train with cross-entropy.
  config.loss.terms = ml_collections.ConfigDict(
    {"cross_entropy": 1.0, "focal": 0.0, "ohem": 0.0, "dice": 0.0, "tversky": 0.0,
     "lovasz": 0.0, "lovasz_hinge": 0.0}
  )  # fmt: skip
  config.loss.aux_weight = 0.4
  # Per-class weights of cross_entropy, ohem, dice and tversky, () for none;
  # `python -m jaxseg.data.stats` suggests median-frequency weights.
  config.loss.class_weights = ()
  # Each term's options. alpha: per-class factors, () for none.
  config.loss.focal = ml_collections.ConfigDict({"gamma": 2.0, "alpha": ()})
  # Pixels whose true-class probability is below max(thresh, the min_kept-th
  # smallest) train; min_kept is per image (mmsegmentation's 100,000 is a fifth
  # of a 512x1024 crop; 512 is an eighth of the 64x64 crops here).
  config.loss.ohem = ml_collections.ConfigDict({"thresh": 0.7, "min_kept": 512})
  # classes: the class indices averaged, () for all.
  config.loss.dice = ml_collections.ConfigDict({"smooth": 0.0, "classes": ()})
  # alpha weighs false positives, beta false negatives; the loss is raised to
  # gamma (focal Tversky, Abraham & Khan 2019, uses 0.75).
  config.loss.tversky = ml_collections.ConfigDict(
    {"alpha": 0.5, "beta": 0.5, "gamma": 1.0, "smooth": 0.0, "classes": ()}
  )
  # classes: "present" (in the labels) or "all".
  config.loss.lovasz = ml_collections.ConfigDict({"per_image": False, "classes": "present"})
  config.loss.lovasz_hinge = ml_collections.ConfigDict({"per_image": True})  # Binary runs.

  # Binary segmentation of a two-class dataset: the foreground class's name
  # ("" for multiclass). Evaluation, predict and export then call a pixel
  # foreground where its probability is at least `threshold`, and the metrics
  # add its IoU, F1, precision and recall (README "Losses").
  config.binary = ml_collections.ConfigDict({"foreground": "", "threshold": 0.5})

  config.batch_size = 16  # Global, over all devices and hosts.
  # Split each batch into this many micro-batches whose gradients are summed:
  # the update of the whole batch with the memory of one micro-batch.
  config.grad_accum_steps = 1
  config.eval_batch_size = 64
  config.num_train_steps = 8000
  # "sgd" (momentum below, weight decay added to the gradient) or "adamw"
  # (decoupled weight decay).
  config.optimizer = "sgd"
  config.learning_rate = 0.1
  config.end_learning_rate = 1e-4
  config.lr_power = 0.9
  config.warmup_steps = 100
  config.momentum = 0.9
  # Trained from scratch with BatchNorm, 1e-3 learned about twice as fast as 5e-4.
  config.weight_decay = 1e-3

  # Training-time evaluation scores validation images at their own size,
  # never resized: grouped by size into a few padded shapes, at most
  # eval_batch_size images and batch_pixels pixels per batch. Images larger
  # than batch_pixels (or all, with mode "slide") are scored by sliding
  # windows of crop_size every stride (() -> config.crop_size, two thirds of it).
  # Boundary quality (scoring.boundary): Boundary IoU's band in pixels (0: 2%
  # of each image's diagonal, the paper's), and the trimap's band widths.
  config.evaluation = ml_collections.ConfigDict(
    {
      "mode": "whole", "batch_pixels": 2**22, "crop_size": (), "stride": (),
      "boundary_width": 0, "trimap_widths": (1, 2, 4, 8, 16, 32),
    }
  )  # fmt: skip

  config.log_every_steps = 100
  config.eval_every_steps = 2000
  # Validation examples drawn as image | truth | prediction at each evaluation
  # (predictions.png in the workdir, and TensorBoard); 0: none.
  config.num_pictures = 4
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 2  # Latest N; the best by mIoU is kept as well.
  return config
