"""Running a trained model: the one forward pass (`forward`), images at full
resolution (`modes`: whole, sliding window, multi-scale + flip), what
`jaxseg.predict` writes (`outputs`, `image_files`) and video (`video`).

The forward pass and the modes are the package's API, named here:
`inference.make_predict_fn`, `inference.slide`, `inference.predict_probs`...
"""

from jaxseg.inference.forward import (
  PredictFn,
  decide,
  decide_logits,
  decision,
  forward_logits,
  make_label_fn,
  make_predict_fn,
)
from jaxseg.inference.modes import (
  default_stride,
  pad_to,
  predict_probs,
  resize_image,
  resize_probs,
  slide,
  slide_bands,
  slide_labels,
  slide_map,
  tile_starts,
  whole,
  whole_batch,
)

__all__ = [
  "PredictFn",
  "decide",
  "decide_logits",
  "decision",
  "default_stride",
  "forward_logits",
  "make_label_fn",
  "make_predict_fn",
  "pad_to",
  "predict_probs",
  "resize_image",
  "resize_probs",
  "slide",
  "slide_bands",
  "slide_labels",
  "slide_map",
  "tile_starts",
  "whole",
  "whole_batch",
]
