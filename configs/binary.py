"""Binary segmentation of your own folder: one foreground class against the
background, U-Net, cross-entropy + Dice on the foreground.

    python -m jaxseg.main --config=configs/binary.py --config.data.folder=path/to/mine

`path/to/mine/classes.json` names the two classes and maps 0/255 masks:
`{"classes": ["background", "foreground"], "label_map": {"255": 1}}`; with
another name for the foreground, add `--config.binary.foreground=NAME`.
Predictions are foreground where its probability reaches
`config.binary.threshold`; evaluation adds its IoU, F1, precision and recall.
`:paper` gives the paper's U-Net widths. `:shapes` trains on the embedded
shapes written as such a folder (stars against everything else) with the
embedded data's recipe:

    python -m jaxseg.data.builders.synthetic_shapes --binary_folder=runs/shapes_star
    python -m jaxseg.main --config=configs/binary.py:shapes
"""

from configs import default, unet

ARGS = ("paper", "shapes")


def get_config(arg: str = ""):
  tokens = [t for t in arg.split(",") if t]
  if any(t not in ARGS for t in tokens):
    raise ValueError(f"configs/binary.py takes {list(ARGS)}, comma-separated; not {arg!r}")
  model = "paper" if "paper" in tokens else ""
  config = unet.get_config(",".join(filter(None, (model, "folder"))))
  config.binary.foreground = "foreground"
  config.loss.terms.dice = 1.0  # Plus cross_entropy's 1.0.
  # Dice of the foreground alone (class 1: classes.json lists the background
  # first), as segmentation_models_pytorch's binary mode: the background's
  # near-1 Dice would otherwise dilute it.
  config.loss.dice.classes = (1,)
  if "shapes" in tokens:
    # The embedded dataset's recipe (configs/default.py, configs/unet.py): the
    # folder recipe's random rescaling and photometric jitter are for photos.
    embedded = default.get_config()
    for key in ("crop_size", "batch_size", "learning_rate", "weight_decay", "warmup_steps",
                "augment", "checkpoint_every_steps"):  # fmt: skip
      config[key] = embedded[key]
    config.num_train_steps = 3000
    config.eval_every_steps = 1000
    config.data.folder = "runs/shapes_star"
    config.data.max_size = (96, 96)
    config.binary.foreground = "star"
  return config
