"""TensorFlow SavedModel and TFLite exports of a run (`jaxseg.export --format=...`).

Both come from `jax2tf` (the network as StableHLO inside a TF graph; the
TFLite converter lowers it to TFLite builtins):

- `savedmodel/`: batch, height and width symbolic where the network allows
  (images are padded to a multiple of 32 inside the graph with the run's pad
  value and the logits cropped back); otherwise the tile size, said so.
- `model.tflite`: one image a call (mobile runtimes run a frame at a time;
  TFLite's converter takes no gathers over a symbolic batch) of any height and
  width where the network allows (the interpreter's `resize_tensor_input`),
  otherwise of the tile size, said so. The zoo's layers avoid what the
  converter refuses at symbolic sizes: gathers, dynamic slices, argmax, pads
  of a symbolic amount. Beside it `model_tile.tflite`, the tile size, which
  XNNPACK runs whole.

`jaxseg.export` checks each as it is written (`parity.check`) with
`run_savedmodel` / `run_tflite`. `serving_tf.py` runs either with TensorFlow
or LiteRT (`ai-edge-litert`) alone; a TFLite model of any size needs LiteRT
(TensorFlow's deprecated `tf.lite.Interpreter` crashes resizing its input).
"""

import os

import numpy as np

from jaxseg.export import stablehlo
from jaxseg.models import onednn, transformer


def _tf_module(fn, spec_shape, dtype: str, batch: int | None = None):
  """A `tf.Module` whose `serve` is `fn` through jax2tf, for images of
  `[batch, *spec_shape]` (None: symbolic)."""
  import tensorflow as tf
  from jax.experimental import jax2tf

  dims = [str(d) if d else name for d, name in zip((batch, *spec_shape), "bhwc", strict=True)]
  poly = f"({', '.join(dims)})"
  converted = jax2tf.convert(fn, polymorphic_shapes=[poly], with_gradient=False)
  module = tf.Module()
  signature = [tf.TensorSpec([batch, *spec_shape], tf.as_dtype(dtype), name="images")]
  module.serve = tf.function(converted, autograph=False, input_signature=signature)
  return module


def save_savedmodel(model, variables, norm, output: str, size) -> dict:
  """Writes `output/savedmodel`; returns what `metadata.json` says of it."""
  import tensorflow as tf

  path = os.path.join(output, "savedmodel")
  serve = stablehlo.padded_forward(model, variables, norm)
  with onednn.backend("xla"), transformer.elementary_erf():
    try:
      module = _tf_module(serve, (None, None, norm.channels), norm.dtype)
      module.serve.get_concrete_function()  # Traces: fails here if shapes must be fixed.
      shape, symbolic = [None, None, norm.channels], True
    except Exception as e:  # Any tracing failure: the network needs fixed shapes.
      print(f"savedmodel: height and width fixed at {tuple(size)} ({type(e).__name__})")
      module = _tf_module(serve, (*size, norm.channels), norm.dtype)
      shape, symbolic = [*size, norm.channels], False
    tf.saved_model.save(module, path)
  return {"path": "savedmodel", "signature": "serve", "input_shape": [None, *shape],
          "symbolic_size": symbolic}  # fmt: skip


def save_tflite(model, variables, norm, output: str, size, *, with_tile: bool = True) -> dict:
  """Writes `output/model.tflite`, one image of any height and width (or of
  `size` where the network needs fixed shapes), and `model_tile.tflite`, one
  of the tile `size`: LiteRT's XNNPACK delegate takes only tensors whose
  shapes are known before the run, so the any-size model runs on its plain
  kernels, 5× slower (81 vs 425 ms for configs/default.py at 512×512 on 2
  cores); servers use the tile model for images that pad to the tile
  (`with_tile=False` leaves it out)."""
  serve = stablehlo.padded_forward(model, variables, norm)
  with onednn.backend("xla"), transformer.elementary_erf():
    try:
      flatbuffer = _tflite_flatbuffer(serve, (None, None, norm.channels), norm.dtype)
      shape, symbolic = [None, None, norm.channels], True
    except Exception as e:  # Any converter refusal: the network needs fixed shapes.
      print(f"tflite: height and width fixed at {tuple(size)} ({type(e).__name__})")
      flatbuffer = _tflite_flatbuffer(serve, (*size, norm.channels), norm.dtype)
      shape, symbolic = [*size, norm.channels], False
    with_tile = with_tile and symbolic
    tile = _tflite_flatbuffer(serve, (*size, norm.channels), norm.dtype) if with_tile else None
  files = {"model.tflite": flatbuffer, **({TILE_FILE: tile} if with_tile else {})}
  for name, content in files.items():
    with open(os.path.join(output, name), "wb") as f:
      f.write(content)
  info = {"path": "model.tflite", "input_shape": [1, *shape], "symbolic_size": symbolic}
  return {**info, "tile_path": TILE_FILE} if with_tile else info


TILE_FILE = "model_tile.tflite"


def _tflite_flatbuffer(serve, spec_shape, dtype: str) -> bytes:
  import tensorflow as tf

  module = _tf_module(serve, spec_shape, dtype, batch=1)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [module.serve.get_concrete_function()], module
  )
  return converter.convert()


def run_savedmodel(output: str, images: np.ndarray) -> np.ndarray:
  import tensorflow as tf

  loaded = tf.saved_model.load(os.path.join(output, "savedmodel"))
  return loaded.serve(tf.constant(images)).numpy()


def tflite_runner(output: str, shape, threads: int | None = None, file: str = "model.tflite"):
  """A function running `file` with LiteRT on one `[1, H, W, bands]` image of
  `shape` (the input is resized to it: an export of any size takes any; one
  of the tile size only the tile)."""
  from ai_edge_litert.interpreter import Interpreter

  interpreter = Interpreter(model_path=os.path.join(output, file), num_threads=threads)
  (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
  interpreter.resize_tensor_input(inp["index"], list(shape))
  interpreter.allocate_tensors()

  def run(image: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(inp["index"], image)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])

  return run


def run_tflite(output: str, images: np.ndarray) -> np.ndarray:
  """The TFLite export on each of `images` (it takes one a call): the tile
  model for images of its size, where there is one, else `model.tflite`."""
  from ai_edge_litert.interpreter import Interpreter

  file = "model.tflite"
  if os.path.exists(os.path.join(output, TILE_FILE)):
    tile = Interpreter(model_path=os.path.join(output, TILE_FILE)).get_input_details()[0]
    file = TILE_FILE if tuple(tile["shape"][1:]) == images.shape[1:] else file
  return np.concatenate(
    [tflite_runner(output, (1, *im.shape), file=file)(im[None]) for im in images]
  )
