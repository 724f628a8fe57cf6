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


_TO_NHWC = [0, 2, 3, 1]


def resize_channels_last(nodes, initializers):
  """A bilinear `Resize` whose result is only transposed to NHWC (the logits'
  last upsampling, with the crop back to the input between them) is moved
  after that transpose: the transpose then moves the small map, and
  onnxruntime resizes NHWC in one pass (LR-ASPP's logits to 480×640: 3.2 ms,
  against 16 ms for the NCHW resize and the transpose of its result)."""
  from onnx import helper, numpy_helper

  values = {i.name: numpy_helper.to_array(i) for i in initializers}
  consumers = {}
  for node in nodes:
    for name in node.input:
      consumers.setdefault(name, []).append(node)
  graph, removed, before = Graph(prefix="nhwc_"), set(), {}
  for resize in nodes:
    if resize.op_type != "Resize":
      continue
    chain = _only_uses(resize, consumers)
    crop = chain if chain is not None and chain.op_type == "Slice" else None
    transpose = _only_uses(crop, consumers) if crop is not None else chain
    if transpose is None or transpose.op_type != "Transpose":
      continue
    if list(transpose.attribute[0].ints) != _TO_NHWC or not _permutable(resize, crop, values):
      continue
    moved = graph.name("transpose")
    before[id(resize)] = helper.make_node("Transpose", [resize.input[0]], [moved], perm=_TO_NHWC)
    resize.input[0] = moved
    for i in range(2, len(resize.input)):  # Scales or sizes, in NHWC order.
      if resize.input[i]:
        resize.input[i] = graph.const(values[resize.input[i]][_TO_NHWC])
    if crop is not None:  # Its axes, named in NCHW, become NHWC's.
      axes = [_TO_NHWC.index(int(a)) for a in values[crop.input[3]]]
      crop.input[3] = graph.const(np.asarray(axes, np.int64))
    last = crop if crop is not None else resize
    last.output[0] = transpose.output[0]
    removed.add(id(transpose))
  kept = []
  for node in nodes:
    if id(node) in before:
      kept.append(before[id(node)])
    if id(node) not in removed:
      kept.append(node)
  return kept, list(initializers) + graph.initializers


def _only_uses(node, consumers):
  uses = consumers.get(node.output[0], [])
  return uses[0] if len(uses) == 1 else None


def _permutable(resize, crop, values) -> bool:
  """Whether the resize's scales or sizes (and the crop's axes) are constants
  this pass can reorder."""
  parameters = [name for name in resize.input[2:] if name]
  if len(parameters) != 1 or parameters[0] not in values:
    return False
  if crop is None:
    return True
  return len(crop.input) >= 4 and crop.input[3] in values


def fold_input_scale(nodes, initializers):
  """A per-channel `Div` or `Mul` by a constant whose only users are
  convolutions (the preprocessing's division by the standard deviation)
  scales their kernels' input channels instead: convolving zero padding is
  unchanged by it, so the result is the same."""
  from onnx import numpy_helper

  values = {i.name: numpy_helper.to_array(i) for i in initializers}
  consumers = {}
  for node in nodes:
    for name in node.input:
      consumers.setdefault(name, []).append(node)
  graph, removed = Graph(prefix="scaled_"), set()
  for node in nodes:
    if node.op_type not in ("Div", "Mul") or node.input[1] not in values:
      continue
    uses = consumers.get(node.output[0], [])
    if not uses or any(u.op_type != "Conv" or u.input[0] != node.output[0] for u in uses):
      continue
    if any(u.input[1] not in values or _group(u) != 1 for u in uses):
      continue
    factor = values[node.input[1]].astype(np.float32)
    channels = values[uses[0].input[1]].shape[1]
    if factor.size != 1 and factor.shape != (1, channels, 1, 1):  # Per NCHW channel only.
      continue
    factor = np.broadcast_to(factor.reshape(-1), (channels,))
    factor = 1 / factor if node.op_type == "Div" else factor
    for use in uses:
      kernel = values[use.input[1]].astype(np.float32) * factor[None, :, None, None]
      use.input[0] = node.input[0]
      use.input[1] = graph.const(kernel)
    removed.add(id(node))
  kept = [node for node in nodes if id(node) not in removed]
  return kept, list(initializers) + graph.initializers


def _group(node) -> int:
  for attribute in node.attribute:
    if attribute.name == "group":
      return attribute.i
  return 1
