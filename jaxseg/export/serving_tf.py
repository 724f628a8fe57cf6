"""Runs a SavedModel (TensorFlow) or TFLite (LiteRT, ai-edge-litert) export of jaxseg alone.

    python serving_tf.py --format=savedmodel --input=image.png --output=labels.png
    python serving_tf.py --format=tflite --input=image.png --output=labels.png

or, from Python, `SavedModelSegmenter(DIR).predict(image)` /
`TFLiteSegmenter(DIR).predict(image)` -> `[H, W]` class indices. The models
hold the network with its preprocessing (the run's images in, logits out). An
export that takes any size runs each image whole (TFLite in its tile model
when the image pads to the tile, as XNNPACK runs that one whole); otherwise
images are covered by tiles of the export's size, as `serving.py` does (whose
tiling this reuses; both files are copied next to the export, and neither
imports jaxseg, Flax or JAX for these formats).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving import ExportedSegmenter, main


class SavedModelSegmenter(ExportedSegmenter):
  """`savedmodel/`, run by TensorFlow."""

  FORMAT = "savedmodel"

  def _load(self, model_dir: str, info: dict) -> None:
    import tensorflow as tf

    self._tf = tf
    self.model = tf.saved_model.load(os.path.join(model_dir, info.get("path", "savedmodel")))

  def logits(self, images: np.ndarray) -> np.ndarray:
    return self.model.serve(self._tf.constant(np.asarray(images, self.dtype))).numpy()


class TFLiteSegmenter(ExportedSegmenter):
  """`model.tflite`, run by LiteRT (`ai_edge_litert`); one of the tile size
  also by TensorFlow's interpreter."""

  FORMAT = "tflite"

  def _load(self, model_dir: str, info: dict) -> None:
    try:
      from ai_edge_litert.interpreter import Interpreter
    except ImportError:
      if info.get("symbolic_size"):
        raise ImportError(
          "this model.tflite takes images of any size, which needs LiteRT: "
          "pip install ai-edge-litert (TensorFlow's tf.lite.Interpreter crashes "
          "resizing the input)"
        ) from None
      import tensorflow as tf

      Interpreter = tf.lite.Interpreter
    path = os.path.join(model_dir, info.get("path", "model.tflite"))
    self.interpreter = Interpreter(model_path=path)
    self.interpreter.allocate_tensors()
    # The same network at the tile size, which XNNPACK runs whole (5× faster).
    tile = info.get("tile_path")
    self.tile_interpreter = tile and Interpreter(model_path=os.path.join(model_dir, tile))
    if self.tile_interpreter:
      self.tile_interpreter.allocate_tensors()

  def logits(self, images: np.ndarray) -> np.ndarray:
    """One image per call of the interpreter (the model takes one). An image
    that pads to the tile as `predict` pads it (to a multiple of 32) runs in
    the tile model; others in the any-size model, its input resized."""
    logits = []
    for image in np.asarray(images, self.dtype):
      h, w = image.shape[:2]
      if self.tile_interpreter and all(
        n <= t and -(-n // 32) == -(-t // 32) for n, t in zip((h, w), self.tile, strict=True)
      ):
        padded = np.empty((*self.tile, image.shape[-1]), self.dtype)
        padded[...] = self.pad_colour
        padded[:h, :w] = image
        logits.append(_invoke(self.tile_interpreter, padded)[:h, :w])
      else:
        logits.append(_invoke(self.interpreter, image))
    return np.stack(logits)


def _invoke(interpreter, image: np.ndarray) -> np.ndarray:
  """`[H, W, bands]` -> `[H, W, C]` logits; a model of any size has its input
  resized to the image's first."""
  (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
  if tuple(inp["shape"]) != (1, *image.shape):
    interpreter.resize_tensor_input(inp["index"], [1, *image.shape])
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
  interpreter.set_tensor(inp["index"], image[None])
  interpreter.invoke()
  return interpreter.get_tensor(out["index"])[0]


if __name__ == "__main__":
  main({"savedmodel": SavedModelSegmenter, "tflite": TFLiteSegmenter}, __doc__)
