"""`jaxseg.export.to_onnx`: every network of the zoo, and the primitives it
translates, run by onnxruntime and compared with JAX."""

import collections
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from jaxseg.data import preprocessing
from jaxseg.export import stablehlo
from jaxseg.export.to_onnx import to_onnx
from jaxseg.models import layers, onednn
from tests.models.test_transformer_networks import TINY as TRANSFORMER_TINY
from tests.models.test_zoo import TINY


def _session(proto):
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  return ort.InferenceSession(
    proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
  )


def _perturbed(variables, seed=0):
  """Random batch-norm statistics and scales, so that folding them matters."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda a: (
      np.asarray(a) * rng.uniform(0.5, 1.5, a.shape).astype(a.dtype)
      + rng.normal(0, 0.05, a.shape).astype(a.dtype)
    ),
    variables,
  )


# Between them these use every rule the zoo needs (FCN-32s/16s and DeepLabV3
# are FCN-8s and DeepLabV3+ with less; PSPNet is exported in test_export; the
# rest of LR-ASPP's ops are in the synthetic test).
NETWORKS = ["unet", "segnet", "fcn8s", "deeplabv3plus", "fastscnn", "segformer", "upernet",
            "upernet_swin"]  # fmt: skip


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_translate_and_match_jax(name):
  """The exported function (in-graph padding, preprocessing, network) at two
  batch sizes and, where the network takes any size, two image sizes."""
  model = TINY[name][0](num_classes=3) if name in TINY else TRANSFORMER_TINY[name](num_classes=3)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  serve = stablehlo.padded_forward(model, _perturbed(variables), preprocessing.IMAGENET)
  with onednn.backend("xla"):
    translate = lambda spec: to_onnx(serve, spec)
    proto, symbolic = stablehlo.export_any_size("onnx", translate, preprocessing.IMAGENET, (64, 64))
    # Pyramid pooling, image pooling and resizes included: any size.
    assert symbolic
    shapes = [(2, 64, 64), (1, 51, 71), (1, 96, 40)]
    session = _session(proto)
    rng = np.random.default_rng(1)
    for shape in shapes:
      images = rng.integers(0, 256, (*shape, 3), np.uint8)
      expected = np.asarray(jax.jit(serve)(images))
      (got,) = session.run(None, {"images": images})
      assert got.shape == expected.shape == (*shape, 3)
      np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def _synthetic(x):
  """Primitives the zoo uses rarely or not at all."""
  kernel = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 4, 2)), jnp.float32)
  y = jax.lax.conv_general_dilated(
    x,
    kernel,
    (1, 1),
    [(0, -1), (2, 1)],
    lhs_dilation=(2, 2),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )  # fmt: skip  (a transposed convolution with negative padding)
  y = jax.lax.pad(y, 0.5, ((0, 0, 0), (1, -2, 0), (0, 0, 0), (0, 0, 0)))
  y = jnp.clip(y, -1.0, 2.0) ** 3 + jnp.square(y) * jax.nn.sigmoid(y)
  a, b = jnp.split(y, 2, axis=-1)
  z = jnp.where(a > b, jnp.tanh(a), jnp.exp(-jnp.abs(b)))
  z = z + z.sum(axis=(1, 2), keepdims=True) / 100 - z.min(axis=1, keepdims=True)
  w = jnp.einsum("nhwc,nhwd->ncd", x, x)[:, None, :1, :1]
  return (
    z[:, :-1:2, 1:, :] * w + jax.lax.dynamic_slice_in_dim(z, 1, z.shape[1] - 1, axis=1)[:, ::2, 1:]
  )


def test_primitives_beyond_the_zoo_match_jax():
  x = np.random.default_rng(2).normal(size=(2, 9, 11, 4)).astype(np.float32)
  proto = to_onnx(_synthetic, jax.ShapeDtypeStruct(x.shape, x.dtype))
  (got,) = _session(proto).run(None, {"images": x})
  np.testing.assert_allclose(got, np.asarray(_synthetic(x)), rtol=1e-4, atol=1e-4)


def test_a_primitive_without_a_rule_is_named():
  with pytest.raises(NotImplementedError, match="cumsum"):
    to_onnx(lambda x: jnp.cumsum(x, axis=1), jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32))


def test_a_real_time_network_is_the_graph_onnxruntime_fuses():
  """LR-ASPP's graph as a converter written for onnxruntime emits it: NCHW
  throughout (one layout transpose in, one out), 1×1 convolutions as `Conv`,
  activations, global pooling and resizes as single operations, batch norm
  folded, the preprocessing's division folded into the first convolution, no
  copy for padding that is not needed, and the logits' last resize done in
  NHWC after the transpose (onnxruntime's NCHW resize and the reorder of its
  full-size result cost 2.5× more); after onnxruntime's optimisation every
  activation is fused into its convolution. The logits equal JAX's."""
  model = TINY["lraspp"][0](num_classes=3)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 96, 3)), train=False)
  serve = stablehlo.padded_forward(model, _perturbed(variables), preprocessing.IMAGENET)
  with onednn.backend("xla"):
    proto = to_onnx(serve, jax.ShapeDtypeStruct((1, 64, 96, 3), np.uint8))
  ops = collections.Counter(node.op_type for node in proto.graph.node)
  assert ops["Transpose"] == 2 and ops["Resize"] == 2, ops
  assert not {"MatMul", "Einsum", "Gather", "Min", "Max", "BatchNormalization"} & set(ops), ops
  assert ops["HardSwish"] and ops["HardSigmoid"] and ops["GlobalAveragePool"], ops
  assert not {"Div", "Concat"} & set(ops), ops
  nodes = list(proto.graph.node)
  last_resize = [node for node in nodes if node.op_type == "Resize"][-1]
  before = [node for node in nodes if last_resize.input[0] in node.output]
  assert before[0].op_type == "Transpose" and list(before[0].attribute[0].ints) == [0, 2, 3, 1]
  scales = [i for i in proto.graph.initializer if i.name == last_resize.input[2]]
  assert list(onnx.numpy_helper.to_array(scales[0])) == [1, 8, 8, 1]
  convolutions = sum(
    1 for _, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
    if leaf.ndim == 4
  )  # fmt: skip
  assert ops["Conv"] == convolutions
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  with tempfile.TemporaryDirectory() as tmp:
    options.optimized_model_filepath = os.path.join(tmp, "optimised.onnx")
    session = ort.InferenceSession(
      proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    optimised = onnx.load(options.optimized_model_filepath)
  fused = collections.Counter(node.op_type for node in optimised.graph.node)
  assert not {"Relu", "HardSwish", "HardSigmoid"} & set(fused), fused
  assert fused["Conv"] == convolutions and fused["Transpose"] <= 1, fused
  images = np.random.default_rng(1).integers(0, 256, (1, 64, 96, 3), np.uint8)
  (got,) = session.run(None, {"images": images})
  expected = np.asarray(jax.jit(serve)(images))
  np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize(
  "fn",
  [
    lambda x: layers.resize_bilinear(x, (36, 44)),  # ×4: a constant scale.
    lambda x: layers.resize_bilinear(x, (20, 13)),  # Up one axis, down the other.
    lambda x: layers.adaptive_avg_pool(x, 3) + layers.global_average_pool(x),  # 9×11 in 3 bins.
    lambda x: (
      jax.nn.hard_swish(x) * jax.nn.relu6(x) - jax.nn.hard_sigmoid(x.transpose(0, 2, 1, 3)).mean()
    ),
  ],
  ids=["resize_by_4", "resize_to_any_size", "pooling", "activations"],
)
def test_functions_with_an_operation_of_their_own_match_jax(fn):
  x = np.random.default_rng(3).normal(size=(2, 9, 11, 4)).astype(np.float32) * 4
  proto = to_onnx(fn, jax.ShapeDtypeStruct(x.shape, x.dtype))
  (got,) = _session(proto).run(None, {"images": x})
  np.testing.assert_allclose(got, np.asarray(jax.jit(fn)(x)), rtol=1e-5, atol=1e-5)
