"""How each JAX primitive becomes ONNX nodes: `RULES[name](translator, eqn, *inputs)`
returns the output value(s) (a `Value`, or a list for several).

Elementwise operations, broadcasts, transposes, concatenations, pads, slices
and reductions keep their operands' layout (a convolution's NCHW output stays
NCHW through batch norm, activations and residual sums); the other rules take
their inputs in JAX's order (`translator.name`)."""

import numpy as np

from jaxseg.export.to_onnx import convolution, named
from jaxseg.export.to_onnx.graph import NCHW, Value, layout_of, onnx_dtype


def _perm(x):
  return x.perm if isinstance(x, Value) else None


def _elementwise(op_type):
  def rule(t, eqn, *xs):
    perm = layout_of(xs)
    names = [t.operand(x, perm) for x in xs]
    lazy = all(isinstance(x, np.ndarray) or x.lazy for x in xs)
    if lazy:  # Every input broadcast: expand one so the result has the full shape.
      names[0], lazy = t.stored(xs[0], perm), False
    return t.tensor(t.graph.op(op_type, names), eqn, lazy, perm=perm)

  return rule


def _unary(*op_types):
  def rule(t, eqn, x):
    name = t.operand(x, _perm(x))
    for op_type in op_types:
      name = t.graph.op(op_type, [name])
    return t.tensor(name, eqn, getattr(x, "lazy", False), perm=_perm(x))

  return rule


def _ne(t, eqn, a, b):
  out = _elementwise("Equal")(t, eqn, a, b)
  return t.tensor(t.graph.op("Not", [out.name]), eqn, out.lazy, perm=out.perm)


def _integer_pow(t, eqn, x):
  y = eqn.params["y"]
  if y < 1:
    raise NotImplementedError(f"ONNX export: integer_pow with exponent {y}")
  name = t.operand(x, _perm(x))
  out = name
  for _ in range(y - 1):
    out = t.graph.op("Mul", [out, name])
  return t.tensor(out, eqn, getattr(x, "lazy", False), perm=_perm(x))


def _square(t, eqn, x):
  name = t.operand(x, _perm(x))
  return t.tensor(t.graph.op("Mul", [name, name]), eqn, getattr(x, "lazy", False), perm=_perm(x))


def _convert_element_type(t, eqn, x):
  to = onnx_dtype(eqn.params["new_dtype"])
  name = t.graph.op("Cast", [t.operand(x, _perm(x))], to=to)
  return t.tensor(name, eqn, getattr(x, "lazy", False), perm=_perm(x))


def _select_n(t, eqn, pred, *cases):
  if len(cases) != 2:
    raise NotImplementedError("ONNX export: select_n with more than two cases")
  if np.dtype(eqn.invars[0].aval.dtype) != np.bool_:
    cast = t.graph.op("Cast", [t.operand(pred, _perm(pred))], to=onnx_dtype(np.bool_))
    pred = Value(cast, eqn.invars[0].aval, getattr(pred, "lazy", False), _perm(pred))
  return _elementwise("Where")(t, eqn, pred, cases[1], cases[0])


def _clamp(t, eqn, low, x, high):
  inner = _elementwise("Max")(t, eqn, x, low)
  return _elementwise("Min")(t, eqn, inner, high)


def _broadcast_in_dim(t, eqn, x):
  """A reshape to the target rank, left lazy (elementwise consumers broadcast
  it); a rank-4 result is stored NCHW where the reshape allows, as the
  convolutions' outputs it meets are."""
  shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
  in_shape = np.shape(x) if isinstance(x, np.ndarray) else x.aval.shape
  if isinstance(x, Value) and x.perm is not None and len(in_shape) == len(shape):
    return t.tensor(t.operand(x, x.perm), eqn, lazy=True, perm=x.perm)
  target = [1] * len(shape)
  for axis, d in zip(dims, in_shape, strict=True):
    target[axis] = d
  perm = NCHW if len(shape) == 4 else None
  if perm and isinstance(x, Value):  # The reshape must keep the data's order.
    order = [perm.index(dims[i]) for i, d in enumerate(in_shape) if not _static_one(d)]
    perm = perm if order == sorted(order) else None
  if isinstance(x, np.ndarray):
    value = x.reshape([int(d) for d in target])
    value = np.transpose(value, perm) if perm else value
    return t.tensor(t.graph.const(np.ascontiguousarray(value)), eqn, lazy=True, perm=perm)
  physical = t.physical_shape(target, perm)
  return t.tensor(t.graph.op("Reshape", [t.name(x), t.shape(physical)]), eqn, lazy=True, perm=perm)


def _iota(t, eqn):
  """0, 1, ... along one axis of a symbolic length (an export of any size's
  interpolation positions): `Range`, reshaped to broadcast, left lazy."""
  shape, axis = eqn.params["shape"], eqn.params["dimension"]
  dtype = np.dtype(eqn.params["dtype"])
  g = t.graph
  length = t.dim(shape[axis])
  if isinstance(length, int):
    values = np.arange(length, dtype=np.int64)
  else:
    limit = g.op("Reshape", [length.name, g.const(np.zeros(0, np.int64))])  # A scalar.
    values = g.op("Range", [g.const(np.asarray(0, np.int64)), limit,
                            g.const(np.asarray(1, np.int64))])  # fmt: skip
  values = g.const(values) if isinstance(values, np.ndarray) else values
  if dtype != np.int64:
    values = g.op("Cast", [values], to=onnx_dtype(dtype))
  target = [1] * len(shape)
  target[axis] = shape[axis]
  return t.tensor(g.op("Reshape", [values, t.shape(target)]), eqn, lazy=True)


def _dim_as_value(t, eqn):
  """A symbolic dimension as a scalar (the count a mean over it divides by)."""
  g, dtype = t.graph, np.dtype(eqn.outvars[0].aval.dtype)
  value = t.dim(eqn.params["dim"])
  if isinstance(value, int):
    return t.tensor(g.const(np.asarray(value, dtype)), eqn)
  scalar = g.op("Reshape", [value.name, g.const(np.zeros(0, np.int64))])
  if dtype != np.int64:
    scalar = g.op("Cast", [scalar], to=onnx_dtype(dtype))
  return t.tensor(scalar, eqn)


def _static_one(d) -> bool:
  return isinstance(d, (int, np.integer)) and d == 1


def _reshape(t, eqn, x):
  if eqn.params.get("dimensions") is not None:
    raise NotImplementedError("ONNX export: reshape with dimensions")
  return t.tensor(t.graph.op("Reshape", [t.name(x), t.shape(eqn.params["new_sizes"])]), eqn)


def _squeeze(t, eqn, x):
  axes = t.graph.const(list(eqn.params["dimensions"]), np.int64)
  return t.tensor(t.graph.op("Squeeze", [t.name(x), axes]), eqn)


def _transpose(t, eqn, x):
  """No operation: the same stored tensor, seen in the new axis order."""
  q = tuple(eqn.params["permutation"])
  have = x.perm or tuple(range(len(q)))
  return t.tensor(x.name, eqn, x.lazy, perm=[q.index(a) for a in have])


def _concatenate(t, eqn, *xs):
  axis = eqn.params["dimension"]
  kept = [x for x, v in zip(xs, eqn.invars, strict=True) if not _static_zero(v.aval.shape[axis])]
  if len(kept) == 1:  # Padding by nothing (an image already a multiple of 32): no copy.
    return kept[0]
  perm = layout_of(kept)
  stored_axis = perm.index(axis) if perm else axis
  name = t.graph.op("Concat", [t.stored(x, perm) for x in kept], axis=stored_axis)
  return t.tensor(name, eqn, perm=perm)


def _static_zero(d) -> bool:
  return isinstance(d, (int, np.integer)) and d == 0


def _pad(t, eqn, x, value):
  config = eqn.params["padding_config"]
  if any(interior for _, _, interior in config):
    raise NotImplementedError("ONNX export: pad with interior padding")
  lows, highs = [int(lo) for lo, _, _ in config], [int(hi) for _, hi, _ in config]
  pad_value = t.graph.const(np.asarray(value).reshape(()))
  if all(p >= 0 for p in lows + highs):  # In the operand's layout.
    perm = _perm(x) or tuple(range(len(config)))
    pads = t.graph.const([lows[p] for p in perm] + [highs[p] for p in perm], np.int64)
    name = t.graph.op("Pad", [t.stored(x, _perm(x)), pads, pad_value])
    return t.tensor(name, eqn, perm=_perm(x))
  name = t.crop(t.name(x), x.aval.shape, [max(0, -p) for p in lows], [max(0, -p) for p in highs])
  if any(p > 0 for p in lows + highs):
    pads = t.graph.const([max(0, p) for p in lows] + [max(0, p) for p in highs], np.int64)
    name = t.graph.op("Pad", [name, pads, pad_value])
  return t.tensor(name, eqn)


def _slice(t, eqn, x):
  starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
  steps = eqn.params["strides"] or (1,) * len(starts)
  shape = x.aval.shape
  if all(
    _same(a, 0) and _same(b, n) and s == 1
    for a, b, n, s in zip(starts, limits, shape, steps, strict=True)
  ):
    return x  # The whole tensor (the crop of logits that needed no padding).
  return _sliced(t, eqn, x, starts, limits, steps)


def _same(a, b) -> bool:
  try:
    return bool(a == b)
  except Exception:  # Symbolic dimensions that JAX cannot compare.
    return False


def _sliced(t, eqn, x, starts, limits, steps):
  """A static slice in the operand's layout."""
  perm = _perm(x) or tuple(range(len(starts)))
  name = _static_slice(
    t, t.stored(x, _perm(x)), [starts[p] for p in perm], [limits[p] for p in perm],
    [steps[p] for p in perm],
  )  # fmt: skip
  return t.tensor(name, eqn, perm=_perm(x))


def _static_slice(t, name, starts, limits, steps):
  g = t.graph
  axes = g.const(list(range(len(starts))), np.int64)
  steps = g.const([int(s) for s in steps], np.int64)
  return g.op("Slice", [name, t.shape(starts), t.shape(limits), axes, steps])


def _dynamic_slice(t, eqn, x, *starts):
  if not all(isinstance(s, np.ndarray) for s in starts):
    raise NotImplementedError("ONNX export: dynamic_slice with computed start indices")
  sizes = eqn.params["slice_sizes"]
  begin = [int(s) for s in starts]
  ends = [b + s for b, s in zip(begin, sizes, strict=True)]
  return _sliced(t, eqn, x, begin, ends, [1] * len(begin))


def _reduce(op_type):
  """A reduction in the operand's layout; the kept axes stay in their order."""

  def rule(t, eqn, x):
    axes = [int(a) for a in eqn.params["axes"]]
    have = _perm(x) or tuple(range(len(x.aval.shape)))
    stored_axes = [have.index(a) for a in axes]
    name = t.stored(x, _perm(x))
    if op_type == "ReduceSum":  # Opset 13+: axes as an input.
      name = t.graph.op(op_type, [name, t.graph.const(stored_axes, np.int64)], keepdims=0)
    else:
      name = t.graph.op(op_type, [name], axes=stored_axes, keepdims=0)
    kept = [a - sum(b < a for b in axes) for a in have if a not in axes]
    return t.tensor(name, eqn, perm=kept)

  return rule


def _argmax(t, eqn, x):
  (axis,) = eqn.params["axes"]
  name = t.graph.op("ArgMax", [t.name(x)], axis=int(axis), keepdims=0)
  return t.tensor(t.graph.op("Cast", [name], to=onnx_dtype(eqn.params["index_dtype"])), eqn)


def _gather(t, eqn, operand, indices):
  """The gathers jnp indexing produces: a constant point (a slice), one axis
  by an index array (Gather), and take_along_axis (GatherElements)."""
  dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
  shape = eqn.invars[0].aval.shape
  index_shape = eqn.invars[1].aval.shape
  starts, collapsed = tuple(dn.start_index_map), tuple(dn.collapsed_slice_dims)
  g = t.graph
  batching = tuple(dn.operand_batching_dims)
  if not batching and isinstance(indices, np.ndarray) and indices.shape == (len(starts),):
    begin, end = [0] * len(shape), list(shape)
    for axis, start in zip(starts, indices.tolist(), strict=True):
      begin[axis], end[axis] = start, start + sizes[axis]
    name = _static_slice(t, t.name(operand), begin, end, [1] * len(shape))
    if collapsed:
      name = g.op("Squeeze", [name, g.const(list(collapsed), np.int64)])
    return t.tensor(name, eqn)
  if len(starts) == 1 and collapsed == starts and index_shape[-1] == 1:
    (axis,) = starts
    index = g.op("Squeeze", [t.name(indices), g.const([len(index_shape) - 1], np.int64)])
    full = all(sizes[i] == shape[i] for i in range(len(shape)) if i != axis and i not in batching)
    n_batch = len(index_shape) - 1
    offset = tuple(range(axis)) + tuple(range(axis + n_batch, len(shape) - 1 + n_batch))
    if not batching and full and tuple(dn.offset_dims) == offset:
      return t.tensor(g.op("Gather", [t.name(operand), index], axis=axis), eqn)
    others = tuple(i for i in range(len(shape)) if i != axis)
    if batching == others == tuple(dn.start_indices_batching_dims) and not dn.offset_dims:
      return t.tensor(g.op("GatherElements", [t.name(operand), index], axis=axis), eqn)
  rest = [i for i in range(len(shape)) if i not in starts]
  if (
    not batching and collapsed == tuple(sorted(starts)) and all(sizes[i] == shape[i] for i in rest)
  ):
    # Points in the start dims, whole rest dims: GatherND over the start dims
    # moved to the front gives [index batch..., rest...]; move to JAX's order.
    front = g.op("Transpose", [t.name(operand)], perm=list(starts) + rest)
    index = t.name(indices)
    if np.dtype(eqn.invars[1].aval.dtype) != np.int64:
      index = g.op("Cast", [index], to=onnx_dtype(np.int64))
    gathered = g.op("GatherND", [front, index])
    n_batch, offsets = len(index_shape) - 1, list(dn.offset_dims)
    batch_iter = iter(range(n_batch))
    perm = [
      n_batch + offsets.index(p) if p in offsets else next(batch_iter)
      for p in range(n_batch + len(rest))
    ]
    return t.tensor(g.op("Transpose", [gathered], perm=perm), eqn)
  raise NotImplementedError(f"ONNX export: gather with dimension numbers {dn}")


def _split(t, eqn, x):
  axis, sizes = eqn.params["axis"], eqn.params["sizes"]
  outs = t.graph.op("Split", [t.name(x), t.shape(sizes)], outputs=len(sizes), axis=axis)
  outs = outs if isinstance(outs, list) else [outs]
  return [t.tensor(name, eqn, index=i) for i, name in enumerate(outs)]


def _identity(t, eqn, x):
  return x


def _barrier(t, eqn, *xs):  # optimization_barrier: only XLA's fusion sees it.
  return list(xs)


_BINARY = {
  "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
  "pow": "Pow", "eq": "Equal", "lt": "Less", "gt": "Greater", "le": "LessOrEqual",
  "ge": "GreaterOrEqual", "and": "And", "or": "Or", "rem": "Mod",
}  # fmt: skip
_UNARY = {
  "neg": ("Neg",), "exp": ("Exp",), "log": ("Log",), "tanh": ("Tanh",), "logistic": ("Sigmoid",),
  "sqrt": ("Sqrt",), "rsqrt": ("Sqrt", "Reciprocal"), "abs": ("Abs",), "erf": ("Erf",),
  "sign": ("Sign",), "floor": ("Floor",), "ceil": ("Ceil",), "not": ("Not",),
}  # fmt: skip
RULES = {
  **{name: _elementwise(op) for name, op in _BINARY.items()},
  **{name: _unary(*ops) for name, ops in _UNARY.items()},
  "ne": _ne, "integer_pow": _integer_pow, "square": _square,
  "convert_element_type": _convert_element_type, "select_n": _select_n, "clamp": _clamp,
  "broadcast_in_dim": _broadcast_in_dim, "iota": _iota,
  "dim_as_value": _dim_as_value, "reshape": _reshape, "squeeze": _squeeze,
  "transpose": _transpose, "concatenate": _concatenate, "pad": _pad, "slice": _slice,
  "dynamic_slice": _dynamic_slice, "reduce_max": _reduce("ReduceMax"),
  "reduce_min": _reduce("ReduceMin"), "reduce_sum": _reduce("ReduceSum"), "argmax": _argmax,
  "gather": _gather, "split": _split, "copy": _identity, "copy_p": _identity,
  "optimization_barrier": _barrier, "stop_gradient": _identity,
  **convolution.RULES,
}  # fmt: skip
NAMED = named.RULES  # Functions (by their jit name) with an ONNX operation of their own.
