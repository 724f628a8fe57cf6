"""`to_onnx`: translates a JAX function's jaxpr to an ONNX graph (opset 17), op by op.

jaxseg's networks use a few dozen JAX primitives; each has a rule in
`rules.py` (`graph.py` walks the jaxpr, `optimize.py` tidies the result).
What makes the result usable rather than a literal transcription:

- Symbolic shapes: the function is traced with JAX's own symbolic dimensions
  (`jax.export.symbolic_shape`), so JAX proves the shapes consistent (the
  in-graph padding to a multiple of 32 included). A shape an op needs at run
  time (a reshape, a broadcast, a slice's end) is a dimension expression,
  evaluated in the graph from the input's `Shape` by `Dim` arithmetic.
- Constant folding: an equation whose inputs are all known (batch-norm
  statistics, kernel casts, interpolation indices) is evaluated by JAX at
  conversion time and stored as an initializer.
- Lazy broadcasts: `broadcast_in_dim` becomes a reshape to the target rank;
  elementwise consumers broadcast it as numpy does, and only an op that needs
  the full shape (concat, conv, a graph output) expands it. A bias is then a
  `[1, 1, 1, C]` initializer, not an image-sized one.
- Convolutions are NHWC in JAX and NCHW in ONNX: each is wrapped in
  transposes, which onnxruntime's transpose optimiser cancels between layers.

A primitive without a rule raises NotImplementedError naming it.
"""

import numpy as np

from jaxseg.export.to_onnx.graph import IR_VERSION, NCHW, OPSET, Dim, Translator, Value, onnx_dtype
from jaxseg.export.to_onnx.optimize import (
  fold_affine,
  fold_input_scale,
  prune,
  resize_channels_last,
)
from jaxseg.export.to_onnx.rules import NAMED, RULES

__all__ = ["IR_VERSION", "OPSET", "to_onnx"]


def to_onnx(fn, spec, dim_names=("batch", "height", "width"), input_name="images"):
  """The ONNX ModelProto of `fn(images)` for `spec` (a ShapeDtypeStruct whose
  leading dimensions may be symbolic, named by `dim_names` in the model)."""
  import jax
  from onnx import helper

  closed = jax.make_jaxpr(fn)(spec)
  t = Translator(RULES, NAMED)
  shape_of = t.graph.op("Shape", [input_name])
  names = {}  # Symbolic input dimension -> its name in the model.
  for axis, d in enumerate(spec.shape):
    if not isinstance(d, (int, np.integer)):
      index = t.graph.const([axis], np.int64)
      t.dims[str(d)] = Dim(t.graph, t.graph.op("Gather", [shape_of, index], axis=0))
      names[str(d)] = dim_names[axis] if axis < len(dim_names) else str(d)

  def model_dims(shape):  # A symbolic dimension that is not an input's is left unnamed.
    return [int(d) if isinstance(d, (int, np.integer)) else names.get(str(d)) for d in shape]

  image = Value(input_name, closed.jaxpr.invars[0].aval)
  if len(spec.shape) == 4:  # NCHW from the start: the whole network then computes in it.
    image = Value(t.graph.op("Transpose", [input_name], perm=list(NCHW)), image.aval, perm=NCHW)
  (out,) = t.run(closed.jaxpr, closed.consts, [image])
  t.graph.nodes.append(helper.make_node("Identity", [t.name(out)], ["logits"]))
  out_aval = closed.jaxpr.outvars[0].aval
  inputs = [
    helper.make_tensor_value_info(input_name, onnx_dtype(spec.dtype), model_dims(spec.shape))
  ]
  outputs = [
    helper.make_tensor_value_info("logits", onnx_dtype(out_aval.dtype), model_dims(out_aval.shape))
  ]
  nodes, initializers = fold_affine(t.graph.nodes, t.graph.initializers)
  nodes, initializers = fold_input_scale(nodes, initializers)
  nodes, initializers = resize_channels_last(nodes, initializers)
  nodes, initializers = prune(nodes, initializers, "logits")
  graph = helper.make_graph(nodes, "jaxseg", inputs, outputs, initializers)
  return helper.make_model(
    graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="jaxseg",
    ir_version=IR_VERSION,
  )  # fmt: skip
