"""Inference convolutions with their epilogue fused (`onednn.conv_inference`,
`layers.Epilogue`): equal to the same computation in XLA, forward and
gradient, alone and as whole networks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.data import preprocessing
from jaxseg.inference import forward
from jaxseg.models import layers, mobilenet, onednn
from tests.export.test_to_onnx import _perturbed
from tests.models.test_zoo import TINY

needs_fusion = pytest.mark.skipif(
  not (onednn.available() and onednn.fuses((1, 8, 8, 4), (1, 1, 4, 4), (1, 1), ((0, 0),) * 2,
                                           (1, 1), 1)),
  reason="oneDNN library (with inference convolutions) not built",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_backend():
  yield
  onednn.set_backend("auto")


def _reference(x, kernel, bias, residual, geometry, activation, out_dtype):
  strides, padding, dilation, groups = geometry
  y = jax.lax.conv_general_dilated(
    x.astype(jnp.float32), kernel.astype(jnp.float32), strides, padding,
    rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=groups, precision="highest",
  ) + bias  # fmt: skip
  if residual is not None:
    y = y + residual.astype(jnp.float32)
  return onednn.ACTIVATIONS[activation](y).astype(out_dtype)


# (size, in, out, kernel, groups, stride, dilation): 3×3, strided depthwise 5×5,
# 1×1 into few channels, dilated 3×3 on an odd size.
GEOMETRIES = [
  ((9, 11), 8, 16, 3, 1, 1, 1),
  ((10, 7), 12, 12, 5, 12, 2, 1),
  ((13, 13), 16, 5, 1, 1, 1, 1),
  ((9, 12), 8, 8, 3, 1, 1, 2),
]
DTYPES = [("float32", "float32"), ("bfloat16", "bfloat16"), ("bfloat16", "float32")]


@needs_fusion
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "-".join(map(str, g)))
@pytest.mark.parametrize("dtypes", DTYPES, ids="->".join)
def test_fused_convolution_equals_xla(geometry, dtypes):
  """Every activation, with and without a residual: the values, and the
  gradient with respect to every operand (the unfused computation's)."""
  (h, w), cin, cout, k, groups, s, d = geometry
  dtype, out_dtype = (jnp.dtype(t) for t in dtypes)
  rng = np.random.default_rng(0)
  pad = (d * (k - 1) // 2,) * 2
  geo = ((s, s), (pad, pad), (d, d), groups)
  x = jnp.asarray(rng.normal(size=(2, h, w, cin)) * 2, dtype)
  kernel = jnp.asarray(rng.normal(size=(k, k, cin // groups, cout)) / k, dtype)
  bias = jnp.asarray(rng.normal(size=(cout,)), jnp.float32)
  out_shape = jax.eval_shape(lambda: _reference(x, kernel, bias, None, geo, "none", out_dtype))
  tolerance = 2e-6 if dtype == out_dtype == jnp.float32 else (3e-3 if out_dtype == dtype else 2e-6)
  for activation in onednn.ACTIVATIONS:
    for with_residual in (False, True):
      residual = None
      if with_residual:
        residual = jnp.asarray(rng.normal(size=out_shape.shape), out_dtype)

      def fused(x, kernel, bias, residual, activation=activation):
        return onednn.conv_inference(
          x, kernel, bias, *geo, activation=activation, residual=residual, out_dtype=out_dtype
        )

      got = jax.jit(fused)(x, kernel, bias, residual)
      want = _reference(x, kernel, bias, residual, geo, activation, out_dtype)
      assert got.dtype == out_dtype and got.shape == want.shape
      scale = max(1.0, float(jnp.max(jnp.abs(want.astype(jnp.float32)))))
      error = float(jnp.max(jnp.abs(got.astype(jnp.float32) - want.astype(jnp.float32)))) / scale
      assert error < tolerance, (activation, with_residual, error)
  if dtype != jnp.float32:
    return  # bfloat16 gradients round where XLA's float32 reference does not.
  # The gradient of the last one (hard-sigmoid with a residual) is XLA's.
  loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a).astype(jnp.float32)))
  reference = functools.partial(
    _reference, geometry=geo, activation=activation, out_dtype=out_dtype
  )
  got = jax.jit(jax.grad(loss(fused), argnums=(0, 1, 2, 3)))(x, kernel, bias, residual)
  want = jax.grad(loss(reference), argnums=(0, 1, 2, 3))(x, kernel, bias, residual)
  for a, b in zip(got, want, strict=True):
    scale = max(1.0, float(jnp.max(jnp.abs(b.astype(jnp.float32)))))
    assert float(jnp.max(jnp.abs(a - b))) < 1e-4 * scale


NETWORKS = ["lraspp", "fastscnn", "deeplabv3plus", "pspnet", "unet", "segnet", "fcn8s", "upernet"]


@needs_fusion
@pytest.mark.parametrize("name", NETWORKS)
def test_networks_in_inference_equal_xla(name):
  """Each network's inference in float32 with every convolution and its
  batch norm, activation and residual sum as one oneDNN primitive (ASPP on
  maps too small for its rates aside: its taps read mostly padding) gives
  XLA's logits; the lowered program has one inference call per batch norm."""
  model = TINY[name][0](num_classes=5)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  variables = _perturbed(variables)
  images = np.random.default_rng(1).integers(0, 256, (2, 128, 160, 3), np.uint8)
  run = lambda v, x: forward.forward_logits(model, v, x, preprocessing.IMAGENET)
  text = jax.jit(run).lower(variables, images).as_text()
  paths = jax.tree_util.tree_leaves_with_path(variables.get("batch_stats", {}))
  norms = [jax.tree_util.keystr(p) for p, _ in paths]  # Auxiliary heads train only.
  norms = [p for p in norms if p.endswith("['mean']") and "aux_head" not in p]
  assert text.count("jaxseg_onednn_conv_inference") >= len(norms), norms
  got = jax.jit(run)(variables, images)
  with onednn.backend("xla"):
    want = jax.jit(run)(variables, images)
  scale = float(jnp.max(jnp.abs(want)))
  assert float(jnp.max(jnp.abs(got - want))) < 1e-5 * scale


def test_epilogue_without_onednn_is_the_unfused_computation():
  """On XLA (exports, GPUs) an epilogue is the plain conv, scale, shift,
  residual and activation: what BatchNorm and the activation compute."""
  conv = layers.Conv(6, 3, use_bias=True)
  x = jax.random.normal(jax.random.key(0), (2, 7, 9, 4))
  variables = conv.init(jax.random.key(1), x)
  scale, shift = jnp.linspace(0.5, 2, 6), jnp.linspace(-1, 1, 6)
  residual = jax.random.normal(jax.random.key(2), (2, 7, 9, 6))
  epilogue = layers.Epilogue(scale, shift, residual, "hardswish", jnp.bfloat16)
  with onednn.backend("xla"):
    got = conv.apply(variables, x, epilogue)
  want = jax.nn.hard_swish(conv.apply(variables, x) * scale + shift + residual)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), want.astype(jnp.bfloat16), rtol=1e-2)


def test_inverted_residual_sums_its_shortcut_in_both_modes():
  """MobileNetV3's block adds its input to its projection in training and
  in inference alike (the sum moved into the projection's epilogue)."""
  block = mobilenet.InvertedResidualV3(3, 32, 16, True, "hardswish")
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 16))
  variables = block.init(jax.random.key(1), x, train=False)
  with onednn.backend("xla"):
    inference = block.apply(variables, x, train=False)
    body = mobilenet.InvertedResidualV3Layers(3, 32, 16, True, "hardswish", 1, 1)
    alone = body.apply({k: v["block"] for k, v in variables.items()}, x, train=False)
  np.testing.assert_allclose(inference, alone + x, atol=1e-5)
