"""Runs an ONNX export of jaxseg (`model.onnx`) with onnxruntime alone.

    python serving_onnx.py --input=image.png --output=labels.png

or, from Python, `OnnxSegmenter(DIR).predict(image)` -> `[H, W]` class
indices. The model holds the network with its preprocessing (the run's
images in, logits out). One that takes any size runs each image whole;
otherwise images are covered by tiles of the export's size, as `serving.py`
does (whose tiling this reuses; both files are copied next to the export,
and neither imports jaxseg, Flax or JAX for this format).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving import ExportedSegmenter, main


class OnnxSegmenter(ExportedSegmenter):
  """`model.onnx`, run by onnxruntime on the CPU (or `providers`)."""

  FORMAT = "onnx"
  providers = ("CPUExecutionProvider",)

  def _load(self, model_dir: str, info: dict) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    path = os.path.join(model_dir, info.get("path", "model.onnx"))
    self.session = ort.InferenceSession(path, options, providers=list(self.providers))
    self.input_name = self.session.get_inputs()[0].name

  def logits(self, images: np.ndarray) -> np.ndarray:
    return self.session.run(None, {self.input_name: np.asarray(images, self.dtype)})[0]


if __name__ == "__main__":
  main({"onnx": OnnxSegmenter}, __doc__)
