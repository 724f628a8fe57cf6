"""Binary segmentation of your own folder: one foreground class against the
background, U-Net, cross-entropy + Dice on the foreground.

    python -m jaxseg.main --config=configs/binary.py --config.data.folder=path/to/mine

`path/to/mine/classes.json` names the two classes and maps 0/255 masks:
`{"classes": ["background", "foreground"], "label_map": {"255": 1}}`; with
another name for the foreground, add `--config.binary.foreground=NAME`.
Predictions are foreground where its probability reaches
`config.binary.threshold`; evaluation adds its IoU, F1, precision and recall.
`:paper` gives the paper's U-Net widths.
"""

from configs import _datasets, unet


def get_config(arg: str = ""):
  model, _ = _datasets.parse_arg(arg, "binary.py", ("paper",))
  config = unet.get_config(",".join(filter(None, (model, "folder"))))
  config.binary.foreground = "foreground"
  config.loss.terms.dice = 1.0  # Plus cross_entropy's 1.0.
  # Dice of the foreground alone, as segmentation_models_pytorch's binary
  # mode: the background's near-1 Dice would otherwise dilute it.
  config.loss.dice.classes = (1,)
  return config
