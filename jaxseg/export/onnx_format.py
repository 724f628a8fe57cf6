"""ONNX export of a run (`jaxseg.export --format=onnx`): `model.onnx`.

The network with its preprocessing (`stablehlo.padded_forward`: the run's
images in, float32 logits out) translated to ONNX opset 17 by
`jaxseg.export.to_onnx`, with batch, height and width symbolic where the network
allows (otherwise batch symbolic and the tile size, said so). It needs only
`onnx` to write and `onnxruntime` to run; `serving_onnx.py` serves it with
onnxruntime alone.
"""

import os

import numpy as np

from jaxseg.export import stablehlo
from jaxseg.models import onednn


def save_onnx(model, variables, norm, output: str, size) -> dict:
  """Writes `output/model.onnx`; returns what `metadata.json` says of it."""
  import onnx

  from jaxseg.export.to_onnx import to_onnx

  serve = stablehlo.padded_forward(model, variables, norm)
  translate = lambda spec: to_onnx(serve, spec)
  with onednn.backend("xla"):  # XLA's convolutions: the ones the translator knows.
    proto, symbolic = stablehlo.export_any_size("onnx", translate, norm, size)
  shape = [None, None, norm.channels] if symbolic else [*size, norm.channels]
  onnx.checker.check_model(proto)
  onnx.save_model(proto, os.path.join(output, "model.onnx"))
  return {"path": "model.onnx", "input_shape": [None, *shape], "symbolic_size": symbolic,
          "opset": proto.opset_import[0].version}  # fmt: skip


def session(path: str, threads: int | None = None):
  """An onnxruntime CPU session with every graph optimisation on."""
  import onnxruntime as ort

  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  if threads:
    options.intra_op_num_threads = threads
  return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(output: str, images: np.ndarray) -> np.ndarray:
  return session(os.path.join(output, "model.onnx")).run(None, {"images": images})[0]
