"""Convolutions and matrix products as ONNX `Conv`, `ConvTranspose` and
`MatMul`. A convolution takes its input in the layout its dimension numbers
name (NCHW for JAX's NHWC) and leaves its output so; a product of an image
with a constant matrix over the channels (a 1×1 convolution written as an
einsum) is a 1×1 `Conv` too, so onnxruntime fuses it like PyTorch's."""

import numpy as np

from jaxseg.export.to_onnx.graph import NCHW


def _conv(t, eqn, lhs, rhs):
  p = eqn.params
  lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
  if p["batch_group_count"] != 1:
    raise NotImplementedError("ONNX export: convolution with batch_group_count")
  g = t.graph
  x = t.stored(lhs, tuple(lhs_spec))  # -> N, C, spatial...
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
  return t.tensor(y, eqn, perm=out_spec)


def _crop_spatial(t, x, shape, lhs_spec, padding):
  nchw = [shape[i] for i in lhs_spec]
  front = [0, 0] + [max(0, -lo) for lo, _ in padding]
  back = [0, 0] + [max(0, -hi) for _, hi in padding]
  return t.crop(x, nchw, front, back)


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


def _moved_last(t, x, rank: int, axis: int) -> str:
  """`x` with `axis` moved last (the others in order)."""
  if axis == rank - 1:
    return t.name(x)
  perm = [i for i in range(rank) if i != axis] + [axis]
  return t.graph.op("Transpose", [t.name(x)], perm=perm)


def _batched_matmul(t, eqn, lhs, rhs, free_l, free_r):
  """A batched product (attention's scores and weighted sums) as a MatMul
  over `[batch, M, K] x [batch, K, N]`, which onnxruntime runs far faster
  than Einsum; batch axes (maybe symbolic) stay as they are (Reshape's 0).
  Of `lhs · rhs` and `(rhsᵀ · lhsᵀ)ᵀ` (its result left in the transposed
  layout for the next operation to read), the one that transposes fewer
  elements."""
  ((lc, rc), (lb, rb)) = eqn.params["dimension_numbers"]
  lshape, rshape = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
  m, k = int(np.prod([lshape[i] for i in free_l])), lshape[lc[0]]
  n, keep = int(np.prod([rshape[i] for i in free_r])), [0] * len(lb)

  def moved(shape, perm) -> int:  # Elements a permutation would move.
    return 0 if list(perm) == sorted(perm) else int(np.prod(shape[len(lb) :]))

  direct = ([*lb, *free_l, *lc], [*rb, *rc, *free_r])
  swapped = ([*rb, *free_r, *rc], [*lb, *lc, *free_l])
  cost_direct = moved(lshape, direct[0]) + moved(rshape, direct[1])
  cost_swapped = moved(rshape, swapped[0]) + moved(lshape, swapped[1])
  logical_out = [*keep, *(lshape[i] for i in free_l), *(rshape[i] for i in free_r)]
  nb, nl, nr = len(lb), len(free_l), len(free_r)
  if cost_direct <= cost_swapped:
    a = _reshaped(t, t.stored(lhs, tuple(direct[0])), [*keep, m, k])
    b = _reshaped(t, t.stored(rhs, tuple(direct[1])), [*keep, k, n])
    return t.tensor(_reshaped(t, t.graph.op("MatMul", [a, b]), logical_out), eqn)
  a = _reshaped(t, t.stored(rhs, tuple(swapped[0])), [*keep, n, k])
  b = _reshaped(t, t.stored(lhs, tuple(swapped[1])), [*keep, k, m])
  stored_out = [*keep, *(rshape[i] for i in free_r), *(lshape[i] for i in free_l)]
  y = _reshaped(t, t.graph.op("MatMul", [a, b]), stored_out)
  perm = (*range(nb), *range(nb + nl, nb + nl + nr), *range(nb, nb + nl))
  return t.tensor(y, eqn, perm=perm)


def _reshaped(t, name: str, shape) -> str:
  return t.graph.op("Reshape", [name, t.graph.const(np.asarray(shape, np.int64))])


def _matrix(t, w, contracting: int) -> str:
  """A 2-D operand as the right side of a MatMul: [K, N]."""
  if contracting == 0:
    return t.name(w)
  if isinstance(w, np.ndarray):
    return t.graph.const(np.ascontiguousarray(w.T))
  return t.graph.op("Transpose", [t.name(w)], perm=[1, 0])


def _pointwise_conv(t, eqn, image, matrix, contracting: int):
  """`[N, H, W, C] · [C, D]` as a 1×1 Conv on the NCHW image."""
  weight = matrix if contracting == 0 else matrix.T  # [C, D]
  weight = np.ascontiguousarray(weight.T[:, :, None, None])  # [D, C, 1, 1]
  y = t.graph.op("Conv", [t.stored(image, NCHW), t.graph.const(weight)], kernel_shape=[1, 1])
  return t.tensor(y, eqn, perm=NCHW)


def _dot_general(t, eqn, lhs, rhs):
  """A product of an image with a constant matrix over its channels is a 1×1
  Conv; with any other matrix (a resize along one axis) a MatMul, with at
  most a transpose either side; anything else an Einsum."""
  ((lc, rc), (lb, rb)) = eqn.params["dimension_numbers"]
  lrank, rrank = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
  g = t.graph
  if not lb and tuple(lc) == (3,) and lrank == 4 and isinstance(rhs, np.ndarray) and rrank == 2:
    return _pointwise_conv(t, eqn, lhs, rhs, rc[0])
  if not lb and len(lc) == 1 and rrank == 2:  # free_l + [N]: JAX's order already.
    x = _moved_last(t, lhs, lrank, lc[0])
    return t.tensor(g.op("MatMul", [x, _matrix(t, rhs, rc[0])]), eqn)
  if not lb and len(lc) == 1 and lrank == 2:  # [M] + free_r: the product's last axis first.
    y = g.op("MatMul", [_moved_last(t, rhs, rrank, rc[0]), _matrix(t, lhs, lc[0])])
    perm = [rrank - 1, *range(rrank - 1)]
    return t.tensor(g.op("Transpose", [y], perm=perm), eqn)
  lshape, rshape = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
  free_l = [i for i in range(lrank) if i not in (*lc, *lb)]
  free_r = [i for i in range(rrank) if i not in (*rc, *rb)]
  static = [lshape[i] for i in (*free_l, *lc)] + [rshape[i] for i in free_r]
  if len(lc) == 1 and all(isinstance(d, int) for d in static):
    return _batched_matmul(t, eqn, lhs, rhs, free_l, free_r)
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


RULES = {"dot_general": _dot_general, "conv_general_dilated": _conv}
