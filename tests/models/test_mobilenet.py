"""MobileNetV2 and MobileNetV3-Large trunks: torchvision's parameter counts,
names and shapes, strides and dilation, and its weight files' names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import backbones, layers, mobilenet, pretrained
from tests.helpers import save_safetensors, tree_size


def _variables(module, shape=(1, 64, 64, 3)):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _flat_params(module) -> dict:
  return pretrained.flatten_dict(_variables(module))


# torchvision's `features` (no classifier), at every output stride.
@pytest.mark.parametrize(
  "name,count", [("mobilenet_v2", 2_223_872), ("mobilenet_v3_large", 2_971_952)]
)
def test_trunk_parameter_counts_match_torchvision(name, count):
  for output_stride in backbones.BACKBONES[name].output_strides:
    variables = _variables(backbones.create(name, output_stride=output_stride))
    assert tree_size(variables["params"]) == count


# Shapes of tensors in torchvision's state dicts (OIHW there, HWIO here).
TORCHVISION_SHAPES = {
  "mobilenet_v2": {
    "features.0.0.weight": (32, 3, 3, 3),
    "features.1.conv.0.0.weight": (32, 1, 3, 3),  # Depthwise, expansion 1.
    "features.1.conv.1.weight": (16, 32, 1, 1),
    "features.2.conv.0.0.weight": (96, 16, 1, 1),
    "features.2.conv.1.0.weight": (96, 1, 3, 3),
    "features.17.conv.2.weight": (320, 960, 1, 1),
    "features.17.conv.3.running_var": (320,),
    "features.18.0.weight": (1280, 320, 1, 1),
  },
  "mobilenet_v3_large": {
    "features.0.0.weight": (16, 3, 3, 3),
    "features.1.block.0.0.weight": (16, 1, 3, 3),  # No expansion: 16 -> 16.
    "features.1.block.1.0.weight": (16, 16, 1, 1),
    "features.4.block.1.0.weight": (72, 1, 5, 5),
    "features.4.block.2.fc1.weight": (24, 72, 1, 1),
    "features.4.block.2.fc2.bias": (72,),
    "features.4.block.3.1.running_mean": (40,),
    "features.13.block.2.fc1.weight": (168, 672, 1, 1),
    "features.16.0.weight": (960, 160, 1, 1),
  },
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_SHAPES))
def test_parameter_names_and_shapes_follow_torchvision(name):
  flat = _flat_params(backbones.create(name))
  for key, shape in TORCHVISION_SHAPES[name].items():
    module, leaf = key.rsplit(".", 1)
    path = module.replace(".", "/")
    if leaf.startswith("running_"):
      assert flat[f"batch_stats/{path}/{leaf[len('running_') :]}"].shape == shape, key
    elif len(shape) == 4:
      assert flat[f"params/{path}/kernel"].shape == shape[2:] + shape[1::-1], key
    else:
      assert flat[f"params/{path}/{'bias' if leaf == 'bias' else 'scale'}"].shape == shape, key


@pytest.mark.parametrize(
  "name,output_stride",
  [("mobilenet_v2", 8), ("mobilenet_v2", 16), ("mobilenet_v2", 32), ("mobilenet_v3_large", 16)],
)
def test_endpoints_by_undilated_stride_and_dilation_past_the_output_stride(name, output_stride):
  module = backbones.create(name, output_stride=output_stride)
  x = jnp.zeros((1, 64, 96, 3))
  variables = _variables(module, x.shape)
  out, endpoints = jax.eval_shape(lambda v: module.apply(v, x, train=False), variables)
  assert set(endpoints) == set(backbones.BACKBONES[name].endpoints)
  for stride in (2, 4, 8, 16, 32):
    actual = min(stride, output_stride)
    assert endpoints[f"stride{stride}"].shape[1:3] == (64 // actual, 96 // actual), stride
  assert out.shape == endpoints["stride32"].shape
  # torchvision's LR-ASPP tap: the first block at stride 8.
  assert endpoints["features4"].shape[1:] == (8, 12, 32 if name == "mobilenet_v2" else 40)


def test_unsupported_output_strides_are_named():
  with pytest.raises(ValueError, match="output stride 16 or 32, not 8"):
    _variables(mobilenet.MobileNetV3Large(output_stride=8))
  with pytest.raises(
    ValueError, match="backbone 'mobilenet_v3_large' runs at output stride 16, 32"
  ):
    backbones.create("mobilenet_v3_large", output_stride=8)


def test_squeeze_excitation_and_hard_swish_compute_as_torchvision():
  # SE: x * hardsigmoid(fc2(relu(fc1(mean(x))))); hardsigmoid = relu6(x + 3) / 6.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 4, 8)).astype(np.float32)
  se = mobilenet.SqueezeExcitation(4)
  variables = se.init(jax.random.key(1), x)
  p = variables["params"]
  s = x.mean(axis=(1, 2))
  s = np.maximum(s @ p["fc1"]["kernel"][0, 0] + p["fc1"]["bias"], 0)
  s = s @ p["fc2"]["kernel"][0, 0] + p["fc2"]["bias"]
  expected = x * (np.clip(s + 3, 0, 6) / 6)[:, None, None]
  np.testing.assert_allclose(se.apply(variables, x), expected, rtol=1e-5, atol=1e-6)
  hardswish = layers.torchvision_unit(3, activation="hardswish")
  variables = hardswish.init(jax.random.key(2), x, train=False)
  y = np.asarray(
    jax.lax.conv_general_dilated(
      x,
      variables["params"]["0"]["kernel"],
      (1, 1),
      "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
  )
  y = y / np.sqrt(1 + 1e-5)  # Fresh BatchNorm: mean 0, var 1, scale 1, bias 0.
  np.testing.assert_allclose(
    hardswish.apply(variables, x, train=False), y * np.clip(y + 3, 0, 6) / 6, rtol=1e-5, atol=1e-5
  )


def _torchvision_state(name: str) -> dict:
  """Random tensors with torchvision's names and OIHW layout, from the trunk's
  own tree, plus the ImageNet classifier and BatchNorm counters."""
  rng = np.random.default_rng(0)
  state = {}
  for path, leaf in _flat_params(backbones.create(name)).items():
    collection, *module, last = path.split("/")
    key = ".".join(module)
    value = rng.normal(size=leaf.shape).astype(np.float32)
    if collection == "batch_stats":
      state[f"{key}.running_{last}"] = np.abs(value) if last == "var" else value
    elif last == "kernel":
      state[f"{key}.weight"] = value.transpose(3, 2, 0, 1)
    else:
      state[f"{key}.{'weight' if last == 'scale' else 'bias'}"] = value
  for key in [k for k in state if k.endswith("running_var")]:
    state[key.replace("running_var", "num_batches_tracked")] = np.zeros((), np.int64)
  state["classifier.0.weight"] = np.zeros((1280, 960), np.float32)
  state["classifier.3.bias"] = np.zeros(1000, np.float32)
  return state


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large"])
def test_a_torchvision_file_is_recognised_and_fits(name, tmp_path):
  state = _torchvision_state(name)
  flat, arch, unused = pretrained.load(save_safetensors(state, tmp_path / f"{name}.safetensors"))
  assert arch == name and unused == ["classifier.0.weight", "classifier.3.bias"]
  module = backbones.create(name)
  pretrained.check_fits(flat, _flat_params(module), f"{name}.safetensors")
  key = "features.4.block.1.0.weight" if name.endswith("large") else "features.2.conv.1.0.weight"
  kernel = flat["params/" + key[: -len(".weight")].replace(".", "/") + "/kernel"]
  np.testing.assert_array_equal(kernel, state[key].transpose(2, 3, 1, 0))  # Depthwise OIHW.
  out, _ = jax.eval_shape(
    lambda v: module.apply(v, jnp.zeros((1, 32, 32, 3)), train=False),
    pretrained.unflatten_dict(flat),
  )
  assert out.shape == (1, 1, 1, 1280 if name == "mobilenet_v2" else 960)


def test_a_mobilenet_v3_small_file_is_refused():
  keys = {f"features.{i}.block.0.0.weight" for i in range(1, 12)} | {"features.0.0.weight"}
  keys |= {"features.12.0.weight"}
  with pytest.raises(ValueError, match="MobileNetV3-Small is not a jaxseg backbone"):
    mobilenet.detect_weights(keys)
