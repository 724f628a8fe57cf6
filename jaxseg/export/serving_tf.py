"""Runs a SavedModel or TFLite export of jaxseg with TensorFlow (or ai-edge-litert) alone.

    python serving_tf.py --format=savedmodel --input=image.png --output=labels.png
    python serving_tf.py --format=tflite --input=image.png --output=labels.png

or, from Python, `SavedModelSegmenter(DIR).predict(image)` /
`TFLiteSegmenter(DIR).predict(image)` -> `[H, W]` class indices. The models
hold the network with its preprocessing (the run's images in, logits out). A
SavedModel that takes any size runs each image whole; otherwise images are
covered by tiles of the export's size, as `serving.py` does (whose tiling
this reuses; both files are copied next to the export, and neither imports
jaxseg, Flax or JAX for these formats).
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

  def logits(self, images: np.ndarray) -> np.ndarray:
    """One image per call of the interpreter (the model takes one); a model
    of any size has its input resized to each image's."""
    (inp,), (out,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
    logits = []
    for image in np.asarray(images, self.dtype):
      if tuple(inp["shape"]) != (1, *image.shape):
        self.interpreter.resize_tensor_input(inp["index"], [1, *image.shape])
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
      self.interpreter.set_tensor(inp["index"], image[None])
      self.interpreter.invoke()
      logits.append(self.interpreter.get_tensor(out["index"])[0])
    return np.stack(logits)


if __name__ == "__main__":
  main({"savedmodel": SavedModelSegmenter, "tflite": TFLiteSegmenter}, __doc__)
