"""Graph clean-ups after translation, so that onnxruntime fuses what XLA would."""

import numpy as np

from jaxseg.export.to_onnx.graph import Graph


def prune(nodes, initializers, output: str):
  """Drops nodes and initializers the output does not need (a dimension
  computed but folded away, say)."""
  needed, kept = {output}, []
  for node in reversed(nodes):
    if any(name in needed for name in node.output):
      kept.append(node)
      needed.update(node.input)
  return kept[::-1], [i for i in initializers if i.name in needed]


def fold_affine(nodes, initializers):
  """Folds per-channel affine ops after a convolution or a matrix product by a
  constant (a bias; batch norm as subtract/multiply/add with constants) into
  its weights and bias, and writes `max(x, 0)` as Relu: onnxruntime then fuses
  the activation into the convolution and cancels the layout transposes."""
  folder = _AffineFolder(nodes, initializers)
  for node in nodes:
    if node.op_type == "Conv" and node.input[1] in folder.values:
      folder.fold_conv(node)
    elif node.op_type == "MatMul" and folder.values.get(node.input[1], np.zeros(0)).ndim == 2:
      folder.fold_matmul(node)
  kept = []
  for node in nodes:
    if id(node) in folder.removed:
      continue
    kept.append(_as_relu(node, folder.values) or node)
    if id(node) in folder.added:
      kept.append(folder.added[id(node)])
  return kept, list(initializers) + folder.graph.initializers


class _AffineFolder:
  """The constants and uses of a graph, and what folding removes and adds."""

  def __init__(self, nodes, initializers):
    from onnx import numpy_helper

    self.values = {i.name: numpy_helper.to_array(i) for i in initializers}
    self.consumers = {}
    for node in nodes:
      for name in node.input:
        self.consumers.setdefault(name, []).append(node)
    self.graph = Graph(prefix="folded_")
    self.removed, self.added = set(), {}

  def fold_conv(self, node) -> None:
    """A Conv whose output (NCHW, or NHWC after a layout Transpose) feeds affine ops."""
    uses = self.consumers.get(node.output[0], [])
    tail, channel_axis = node, -3
    if len(uses) == 1 and uses[0].op_type == "Transpose":
      if list(uses[0].attribute[0].ints) != [0, 2, 3, 1]:
        return
      tail, channel_axis = uses[0], -1
    weight = self.values[node.input[1]].astype(np.float32)
    bias = np.zeros(weight.shape[0], np.float32)
    if len(node.input) > 2:
      bias = self.values[node.input[2]].astype(np.float32)
    scale = lambda w, v: w * v[:, None, None, None]
    weight, bias = self.fold_chain(tail, weight, bias, scale, channel_axis)
    del node.input[1:]
    node.input.extend([self.graph.const(weight), self.graph.const(bias)])

  def fold_matmul(self, node) -> None:
    """A MatMul by a constant matrix; a bias becomes an Add after it
    (MatMul has none; onnxruntime fuses the two)."""
    from onnx import helper

    weight = self.values[node.input[1]].astype(np.float32)
    bias = np.zeros(weight.shape[1], np.float32)
    weight, bias = self.fold_chain(node, weight, bias, lambda w, v: w * v[None, :], -1)
    node.input[1] = self.graph.const(weight)
    if bias.any():
      product = self.graph.name("matmul")
      self.added[id(node)] = helper.make_node(
        "Add", [product, self.graph.const(bias)], [node.output[0]]
      )
      node.output[0] = product

  def channel_vector(self, name, channels, axis):
    """The constant as a vector if it broadcasts along the channel axis
    (`axis`, counted from the end) only."""
    value = self.values.get(name)
    if value is None or value.ndim > 4:
      return None
    if value.size != 1:
      if value.ndim < -axis or value.shape[axis] != channels or value.size != channels:
        return None
    return np.broadcast_to(value.reshape(-1).astype(np.float32), (channels,))

  def fold_chain(self, tail, weight, bias, scale, axis):
    """Absorbs the ops after `tail` (its output's channels on `axis`) into
    weight and bias."""
    while True:
      uses = self.consumers.get(tail.output[0], [])
      if len(uses) != 1 or uses[0].op_type not in ("Add", "Sub", "Mul", "Div"):
        return weight, bias
      op = uses[0]
      x_first = op.input[0] == tail.output[0]
      if not x_first and op.op_type not in ("Add", "Mul"):  # c - x, c / x
        return weight, bias
      vector = self.channel_vector(op.input[1] if x_first else op.input[0], len(bias), axis)
      if vector is None:
        return weight, bias
      if op.op_type == "Add":
        bias = bias + vector
      elif op.op_type == "Sub":
        bias = bias - vector
      elif op.op_type == "Mul":
        weight, bias = scale(weight, vector), bias * vector
      else:
        weight, bias = scale(weight, 1 / vector), bias / vector
      self.removed.add(id(op))
      tail.output[0] = op.output[0]


def _as_relu(node, values):
  """`Max(x, 0)` as a Relu node (which onnxruntime fuses into a convolution)."""
  from onnx import helper

  if node.op_type != "Max" or len(node.input) != 2:
    return None
  for x, other in (node.input, node.input[::-1]):
    zero = values.get(other)
    if zero is not None and zero.size == 1 and float(zero.reshape(())) == 0.0:
      return helper.make_node("Relu", [x], list(node.output))
  return None
