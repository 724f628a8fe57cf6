"""How each JAX primitive becomes ONNX nodes: `RULES[name](translator, eqn, *inputs)`
returns the output value(s) (a `Value`, or a list for several)."""

import numpy as np


def onnx_dtype(dtype) -> int:
  from onnx import helper

  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _elementwise(op_type):
  def rule(t, eqn, *xs):
    lazy = all(isinstance(x, np.ndarray) or x.lazy for x in xs)
    if lazy:  # Every input broadcast: expand one so the result has the full shape.
      names = [t.name(xs[0])] + [t.operand(x) for x in xs[1:]]
      lazy = False
    else:
      names = [t.operand(x) for x in xs]
    return t.tensor(t.graph.op(op_type, names), eqn, lazy)

  return rule


def _unary(*op_types):
  def rule(t, eqn, x):
    name = t.operand(x)
    for op_type in op_types:
      name = t.graph.op(op_type, [name])
    return t.tensor(name, eqn, getattr(x, "lazy", False))

  return rule


def _ne(t, eqn, a, b):
  out = _elementwise("Equal")(t, eqn, a, b)
  return t.tensor(t.graph.op("Not", [out.name]), eqn, out.lazy)


def _integer_pow(t, eqn, x):
  y = eqn.params["y"]
  if y < 1:
    raise NotImplementedError(f"ONNX export: integer_pow with exponent {y}")
  name = t.operand(x)
  out = name
  for _ in range(y - 1):
    out = t.graph.op("Mul", [out, name])
  return t.tensor(out, eqn, getattr(x, "lazy", False))


def _square(t, eqn, x):
  name = t.operand(x)
  return t.tensor(t.graph.op("Mul", [name, name]), eqn, getattr(x, "lazy", False))


def _convert_element_type(t, eqn, x):
  to = onnx_dtype(eqn.params["new_dtype"])
  return t.tensor(t.graph.op("Cast", [t.operand(x)], to=to), eqn, getattr(x, "lazy", False))


def _select_n(t, eqn, pred, *cases):
  if len(cases) != 2:
    raise NotImplementedError("ONNX export: select_n with more than two cases")
  if np.dtype(eqn.invars[0].aval.dtype) != np.bool_:
    cast = t.graph.op("Cast", [t.operand(pred)], to=onnx_dtype(np.bool_))
    pred = t.value(cast, eqn.invars[0].aval, getattr(pred, "lazy", False))
  return _elementwise("Where")(t, eqn, pred, cases[1], cases[0])


def _clamp(t, eqn, low, x, high):
  inner = _elementwise("Max")(t, eqn, x, low)
  return _elementwise("Min")(t, eqn, inner, high)


def _broadcast_in_dim(t, eqn, x):
  shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
  in_shape = np.shape(x) if isinstance(x, np.ndarray) else x.aval.shape
  target = [1] * len(shape)
  for axis, d in zip(dims, in_shape, strict=True):
    target[axis] = d
  if isinstance(x, np.ndarray):
    return t.tensor(t.graph.const(x.reshape([int(d) for d in target])), eqn, lazy=True)
  return t.tensor(t.graph.op("Reshape", [t.name(x), t.shape(target)]), eqn, lazy=True)


def _reshape(t, eqn, x):
  if eqn.params.get("dimensions") is not None:
    raise NotImplementedError("ONNX export: reshape with dimensions")
  return t.tensor(t.graph.op("Reshape", [t.name(x), t.shape(eqn.params["new_sizes"])]), eqn)


def _squeeze(t, eqn, x):
  axes = t.graph.const(list(eqn.params["dimensions"]), np.int64)
  return t.tensor(t.graph.op("Squeeze", [t.name(x), axes]), eqn)


def _transpose(t, eqn, x):
  return t.tensor(t.graph.op("Transpose", [t.name(x)], perm=list(eqn.params["permutation"])), eqn)


def _concatenate(t, eqn, *xs):
  axis = eqn.params["dimension"]
  kept = [x for x, v in zip(xs, eqn.invars, strict=True) if not _static_zero(v.aval.shape[axis])]
  return t.tensor(t.graph.op("Concat", [t.name(x) for x in kept], axis=axis), eqn)


def _static_zero(d) -> bool:
  return isinstance(d, (int, np.integer)) and d == 0


def _pad(t, eqn, x, value):
  config = eqn.params["padding_config"]
  if any(interior for _, _, interior in config):
    raise NotImplementedError("ONNX export: pad with interior padding")
  name = t.name(x)
  lows, highs = [int(lo) for lo, _, _ in config], [int(hi) for _, hi, _ in config]
  if any(p < 0 for p in lows + highs):  # Negative padding crops.
    name = _slice_ends(
      t, name, x.aval.shape, [max(0, -p) for p in lows], [max(0, -p) for p in highs]
    )
  if any(p > 0 for p in lows + highs):
    pads = t.graph.const([max(0, p) for p in lows] + [max(0, p) for p in highs], np.int64)
    name = t.graph.op("Pad", [name, pads, t.graph.const(np.asarray(value).reshape(()))])
  return t.tensor(name, eqn)


def _slice_ends(t, name, shape, front, back):
  """Crops `front[i]` elements from the start and `back[i]` from the end of axis i."""
  axes = [i for i in range(len(shape)) if front[i] or back[i]]
  starts = [front[i] for i in axes]
  ends = [t.dim(shape[i]) - back[i] if back[i] else np.iinfo(np.int64).max for i in axes]
  return t.graph.op(
    "Slice", [name, t.graph.const(starts, np.int64), t.shape(ends), t.graph.const(axes, np.int64)]
  )


def _slice(t, eqn, x):
  starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
  steps = eqn.params["strides"] or (1,) * len(starts)
  return t.tensor(_static_slice(t, t.name(x), starts, limits, steps), eqn)


def _static_slice(t, name, starts, limits, steps):
  axes = list(range(len(starts)))
  return t.graph.op(
    "Slice",
    [
      name, t.shape(starts), t.shape(limits), t.graph.const(axes, np.int64),
      t.graph.const([int(s) for s in steps], np.int64),
    ],
  )  # fmt: skip


def _dynamic_slice(t, eqn, x, *starts):
  if not all(isinstance(s, np.ndarray) for s in starts):
    raise NotImplementedError("ONNX export: dynamic_slice with computed start indices")
  sizes = eqn.params["slice_sizes"]
  begin = [int(s) for s in starts]
  return t.tensor(
    _static_slice(
      t, t.name(x), begin, [b + s for b, s in zip(begin, sizes, strict=True)], [1] * len(begin)
    ),
    eqn,
  )


def _reduce(op_type):
  def rule(t, eqn, x):
    axes = list(eqn.params["axes"])
    if op_type == "ReduceSum":  # Opset 13+: axes as an input.
      name = t.graph.op(op_type, [t.name(x), t.graph.const(axes, np.int64)], keepdims=0)
    else:
      name = t.graph.op(op_type, [t.name(x)], axes=axes, keepdims=0)
    return t.tensor(name, eqn)

  return rule


def _argmax(t, eqn, x):
  (axis,) = eqn.params["axes"]
  name = t.graph.op("ArgMax", [t.name(x)], axis=int(axis), keepdims=0)
  return t.tensor(t.graph.op("Cast", [name], to=onnx_dtype(eqn.params["index_dtype"])), eqn)


def _moved_last(t, x, rank: int, axis: int) -> str:
  """`x` with `axis` moved last (the others in order)."""
  if axis == rank - 1:
    return t.name(x)
  perm = [i for i in range(rank) if i != axis] + [axis]
  return t.graph.op("Transpose", [t.name(x)], perm=perm)


def _matrix(t, w, contracting: int) -> str:
  """A 2-D operand as the right side of a MatMul: [K, N]."""
  if contracting == 0:
    return t.name(w)
  if isinstance(w, np.ndarray):
    return t.graph.const(np.ascontiguousarray(w.T))
  return t.graph.op("Transpose", [t.name(w)], perm=[1, 0])


def _dot_general(t, eqn, lhs, rhs):
  """A product with a matrix (a 1×1 convolution, a resize along one axis) is
  a MatMul, with at most a transpose either side; anything else an Einsum."""
  ((lc, rc), (lb, rb)) = eqn.params["dimension_numbers"]
  lrank, rrank = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
  g = t.graph
  if not lb and len(lc) == 1 and rrank == 2:  # free_l + [N]: JAX's order already.
    x = _moved_last(t, lhs, lrank, lc[0])
    return t.tensor(g.op("MatMul", [x, _matrix(t, rhs, rc[0])]), eqn)
  if not lb and len(lc) == 1 and lrank == 2:  # [M] + free_r: the product's last axis first.
    y = g.op("MatMul", [_moved_last(t, rhs, rrank, rc[0]), _matrix(t, lhs, 1 - lc[0])])
    perm = [rrank - 1, *range(rrank - 1)]
    return t.tensor(g.op("Transpose", [y], perm=perm), eqn)
  letters = iter("abcdefghijklmnopqrstuvwxyz")
  lhs_idx = [next(letters) for _ in range(lrank)]
  rhs_idx = [next(letters) for _ in range(rrank)]
  for a, b in zip(lc + lb, rc + rb, strict=True):
    rhs_idx[b] = lhs_idx[a]
  batch = [lhs_idx[a] for a in lb]
  free_l = [c for i, c in enumerate(lhs_idx) if i not in lc + lb]
  free_r = [c for i, c in enumerate(rhs_idx) if i not in rc + rb]
  equation = f"{''.join(lhs_idx)},{''.join(rhs_idx)}->{''.join(batch + free_l + free_r)}"
  return t.tensor(t.graph.op("Einsum", [t.name(lhs), t.name(rhs)], equation=equation), eqn)


def _conv(t, eqn, lhs, rhs):
  p = eqn.params
  lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
  if p["batch_group_count"] != 1:
    raise NotImplementedError("ONNX export: convolution with batch_group_count")
  g = t.graph
  x = g.op("Transpose", [t.name(lhs)], perm=list(lhs_spec))  # -> N, C, spatial...
  if isinstance(rhs, np.ndarray):
    kernel = np.transpose(rhs, rhs_spec)  # -> O, I, spatial...
  else:
    kernel = g.op("Transpose", [t.name(rhs)], perm=list(rhs_spec))
  padding = [(int(lo), int(hi)) for lo, hi in p["padding"]]
  rhs_dilation = [int(d) for d in (p["rhs_dilation"] or (1,) * len(padding))]
  lhs_dilation = [int(d) for d in (p["lhs_dilation"] or (1,) * len(padding))]
  strides = [int(s) for s in p["window_strides"]]
  groups = int(p["feature_group_count"])
  if any(d > 1 for d in lhs_dilation):
    y = _conv_transpose(t, x, kernel, padding, lhs_dilation, rhs_dilation, strides, groups)
  else:
    w = g.const(kernel) if isinstance(kernel, np.ndarray) else kernel
    pads = [max(0, lo) for lo, _ in padding] + [max(0, hi) for _, hi in padding]
    if any(lo < 0 or hi < 0 for lo, hi in padding):  # Crop first, then convolve.
      x = _crop_spatial(t, x, eqn.invars[0].aval.shape, lhs_spec, padding)
    y = g.op("Conv", [x, w], strides=strides, pads=pads, dilations=rhs_dilation, group=groups)
  return t.tensor(g.op("Transpose", [y], perm=[int(i) for i in np.argsort(out_spec)]), eqn)


def _crop_spatial(t, x, shape, lhs_spec, padding):
  nchw = [shape[i] for i in lhs_spec]
  front = [0, 0] + [max(0, -lo) for lo, _ in padding]
  back = [0, 0] + [max(0, -hi) for _, hi in padding]
  return _slice_ends(t, x, nchw, front, back)


def _conv_transpose(t, x, kernel, padding, lhs_dilation, rhs_dilation, strides, groups):
  """A convolution of the input dilated by `lhs_dilation` (how JAX writes a
  transposed convolution) as ONNX ConvTranspose with the kernel flipped."""
  if groups != 1 or any(s != 1 for s in strides) or not isinstance(kernel, np.ndarray):
    raise NotImplementedError("ONNX export: strided, grouped or computed transposed convolution")
  spatial = kernel.shape[2:]
  flipped = np.flip(kernel, axis=tuple(range(2, kernel.ndim))).swapaxes(0, 1)  # I, O, ...
  effective = [d * (k - 1) + 1 for k, d in zip(spatial, rhs_dilation, strict=True)]
  begin = [k - 1 - lo for k, (lo, _) in zip(effective, padding, strict=True)]
  end = [k - 1 - hi for k, (_, hi) in zip(effective, padding, strict=True)]
  g = t.graph
  y = g.op(
    "ConvTranspose", [x, g.const(np.ascontiguousarray(flipped))], strides=lhs_dilation,
    pads=[max(0, p) for p in begin + end], dilations=rhs_dilation,
  )  # fmt: skip
  if any(p < 0 for p in begin + end):  # More padding than the kernel covers: zeros.
    extra = [0, 0] + [max(0, -p) for p in begin] + [0, 0] + [max(0, -p) for p in end]
    y = g.op("Pad", [y, g.const(extra, np.int64)])
  return y


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
  "broadcast_in_dim": _broadcast_in_dim, "reshape": _reshape, "squeeze": _squeeze,
  "transpose": _transpose, "concatenate": _concatenate, "pad": _pad, "slice": _slice,
  "dynamic_slice": _dynamic_slice, "reduce_max": _reduce("ReduceMax"),
  "reduce_min": _reduce("ReduceMin"), "reduce_sum": _reduce("ReduceSum"), "argmax": _argmax,
  "dot_general": _dot_general, "conv_general_dilated": _conv, "gather": _gather,
  "split": _split, "copy": _identity, "copy_p": _identity,
}  # fmt: skip
