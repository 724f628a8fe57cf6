"""Functions that are one ONNX operation: `RULES[name]` translates a call of
the jitted function `name` (jax.nn's activations, `layers.resize_bilinear`,
`layers.global_average_pool`) as a whole, in its operand's layout, instead of
the primitives of its body. onnxruntime fuses these operations into the
convolution before them, as it does for PyTorch's exports."""

import numpy as np

from jaxseg.export.to_onnx.graph import NCHW

_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


def _activation(op_type, **attrs):
  def rule(t, eqn, x):
    if np.dtype(eqn.invars[0].aval.dtype) not in _FLOATS:
      return None  # Translated from its body.
    name = t.graph.op(op_type, [t.operand(x, x.perm)], **attrs)
    return t.tensor(name, eqn, x.lazy, perm=x.perm)

  return rule


def _relu6(t, eqn, x):
  dtype = np.dtype(eqn.invars[0].aval.dtype)
  if dtype not in _FLOATS:
    return None
  low, high = t.graph.const(np.asarray(0, dtype)), t.graph.const(np.asarray(6, dtype))
  name = t.graph.op("Clip", [t.operand(x, x.perm), low, high])
  return t.tensor(name, eqn, x.lazy, perm=x.perm)


def _image_rule(rule):
  """Applies `rule` to float32 NCHW images; other calls are translated from
  their body (returns None)."""

  def wrapped(t, eqn, x):
    aval = eqn.invars[0].aval
    if len(aval.shape) != 4 or np.dtype(aval.dtype) != np.float32:
      return None
    return rule(t, eqn, t.stored(x, NCHW))

  return wrapped


@_image_rule
def _resize_bilinear(t, eqn, x):
  """PyTorch's bilinear `align_corners=False` is ONNX's `half_pixel` linear
  resize (source positions clamped to the image in both)."""
  out = eqn.outvars[0].aval.shape
  if tuple(out) == tuple(eqn.invars[0].aval.shape):
    return t.tensor(x, eqn, perm=NCHW)
  scales = _static_scales(eqn.invars[0].aval.shape, out)
  if scales is not None:  # A constant factor: onnxruntime's NCHWc kernels then run it.
    inputs = [x, "", t.graph.const(np.asarray([1, 1, *scales], np.float32))]
  else:
    inputs = [x, "", "", t.shape([out[p] for p in NCHW])]
  y = t.graph.op("Resize", inputs, mode="linear", coordinate_transformation_mode="half_pixel")
  return t.tensor(y, eqn, perm=NCHW)


def _static_scales(in_shape, out_shape):
  """[sh, sw] if the static output size is exactly the input size times them
  (in float32, as Resize computes `floor(in * scale)`), else None."""
  scales = []
  for axis in (1, 2):
    n, m = in_shape[axis], out_shape[axis]
    if not isinstance(n, (int, np.integer)) or not isinstance(m, (int, np.integer)):
      return None
    scale = np.float32(m / n)
    if int(np.floor(np.float32(n) * scale)) != m or float(scale) * n != m:
      return None
    scales.append(float(scale))
  return scales


@_image_rule
def _global_average_pool(t, eqn, x):
  return t.tensor(t.graph.op("GlobalAveragePool", [x]), eqn, perm=NCHW)


RULES = {
  "relu": _activation("Relu"),
  "relu6": _relu6,
  "hard_silu": _activation("HardSwish"),  # jax.nn.hard_swish
  "hard_sigmoid": _activation("HardSigmoid", alpha=1 / 6, beta=0.5),
  "_resize_bilinear": _resize_bilinear,  # layers.resize_bilinear
  "global_average_pool": _global_average_pool,
}
