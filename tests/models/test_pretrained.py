"""ImageNet backbones from torchvision/timm files, `jaxseg.convert`, `config.init_from`.

The tests marked `torchvision` compare with torchvision's own forward pass;
they skip when torch is not installed (`pip install -r requirements-convert.txt`).
The others write state dicts in torchvision's names and OIHW layout with numpy.
"""

import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxseg.models import backbones, pretrained, resnet, vgg
from jaxseg.training import loop
from tests.helpers import (
  ROOT,
  needs_torch,
  one_step_at_learning_rate_zero,
  save_safetensors,
  saved_params,
  tiny_config,
  torch_reference,
  torchvision_resnet_state,
)


def _torchvision_vgg(batch_norm: bool) -> dict:
  """Zeros with torchvision's VGG16(-BN) names and shapes (for shape checks)."""
  state, index, cin = {}, 0, 3
  for v in vgg.VGG16_CHANNELS:
    if v == "M":
      index += 1
      continue
    state[f"features.{index}.weight"] = np.zeros((v, cin, 3, 3), np.float32)
    state[f"features.{index}.bias"] = np.zeros(v, np.float32)
    if batch_norm:
      for leaf in ("weight", "bias", "running_mean", "running_var"):
        state[f"features.{index + 1}.{leaf}"] = np.zeros(v, np.float32)
      index += 1
    index, cin = index + 2, v
  for i, shape in ((0, (4096, 512 * 7 * 7)), (3, (4096, 4096)), (6, (1000, 4096))):
    state[f"classifier.{i}.weight"] = np.zeros(shape, np.float32)
    state[f"classifier.{i}.bias"] = np.zeros(shape[0], np.float32)
  return state


def _stem_reference(state: dict, image_nhwc: np.ndarray) -> np.ndarray:
  """conv1-bn1-relu-maxpool computed from the raw OIHW tensors in NCHW."""
  x = jnp.asarray(image_nhwc.transpose(0, 3, 1, 2))
  y = jax.lax.conv_general_dilated(
    x,
    jnp.asarray(state["conv1.weight"]),
    (2, 2),
    ((3, 3), (3, 3)),
    dimension_numbers=("NCHW", "OIHW", "NCHW"),
  )
  c = lambda k: jnp.asarray(state[f"bn1.{k}"])[None, :, None, None]
  y = (y - c("running_mean")) / jnp.sqrt(c("running_var") + 1e-5) * c("weight") + c("bias")
  y = jax.lax.reduce_window(
    jnp.maximum(y, 0),
    -jnp.inf,
    jax.lax.max,
    (1, 1, 3, 3),
    (1, 1, 2, 2),
    ((0, 0), (0, 0), (1, 1), (1, 1)),
  )
  return np.asarray(y).transpose(0, 2, 3, 1)


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_torchvision_resnet_file_loads_and_its_stem_computes_the_oihw_convolution(tmp_path):
  state = torchvision_resnet_state((2, 2, 2, 2), bottleneck=False, width=8)
  flat, arch, unused = pretrained.load(save_safetensors(state, tmp_path / "r18.safetensors"))
  assert arch == "resnet18" and unused == ["fc.bias", "fc.weight"]
  assert not any("num_batches_tracked" in k for k in flat)
  np.testing.assert_array_equal(
    flat["params/layer2/0/downsample/0/kernel"][0, 0],
    state["layer2.0.downsample.0.weight"][:, :, 0, 0].T,
  )
  np.testing.assert_array_equal(
    flat["batch_stats/layer3/1/bn2/var"], state["layer3.1.bn2.running_var"]
  )
  np.testing.assert_array_equal(flat["params/layer3/1/bn2/scale"], state["layer3.1.bn2.weight"])
  image = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  _, endpoints = resnet.ResNet18(width=8).apply(pretrained.unflatten_dict(flat), image, train=False)
  assert _rel(endpoints["stem"], _stem_reference(state, image)) < 1e-5


def test_vgg_fully_connected_layers_become_fc6_and_fc7_convolutions():
  rng = np.random.default_rng(0)
  fc6 = rng.normal(size=(16, 512 * 7 * 7)).astype(np.float32)
  fc7 = rng.normal(size=(16, 16)).astype(np.float32)
  flat, unused = pretrained.torch_to_jaxseg(
    {
      "classifier.0.weight": fc6,
      "classifier.0.bias": np.zeros(16, np.float32),
      "classifier.3.weight": fc7,
      "classifier.6.weight": np.zeros((10, 16), np.float32),
    },
    "vgg16",
  )
  assert unused == ["classifier.6.weight"]
  pool5 = rng.normal(size=(1, 7, 7, 512)).astype(np.float32)
  conv = jax.lax.conv_general_dilated(
    pool5, flat["params/fc6/kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  # torchvision flattens pool5 as [C, H, W] before classifier.0.
  linear = fc6 @ pool5[0].transpose(2, 0, 1).reshape(-1)
  assert _rel(conv[0, 0, 0], linear) < 1e-5
  np.testing.assert_array_equal(flat["params/fc7/kernel"][0, 0], fc7.T)


def _model_config(**fields):
  config = tiny_config("unused").model
  for k, v in fields.items():
    config[k] = v
  return config


def _model_and_abstract_variables(model_config):
  from jaxseg.models import create_model

  config = tiny_config("unused")
  config.model = model_config
  model = create_model(config, 5)
  return model, jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )


@pytest.mark.parametrize(
  "case,message",
  [
    ("other_arch", "holds a resnet34; the model's backbone is a resnet18"),
    ("other_width", "batch_stats/backbone/bn1/mean: (16,) there, (8,) in the model"),
    ("missing", "missing from it (1): batch_stats/backbone/layer4/1/bn2/var"),
    ("extra", "not in the model (1): params/backbone/layer4/1/conv3/kernel"),
    ("deep_stem", "deep-stem ResNet"),
    ("no_backbone", "UNet has no ImageNet backbone"),
    ("no_file", "does not exist"),
  ],
)
def test_backbone_mismatches_raise_naming_the_keys(tmp_path, case, message):
  state = torchvision_resnet_state((2, 2, 2, 2), bottleneck=False, width=8)
  model_config = _model_config()
  if case == "other_arch":
    state = torchvision_resnet_state((3, 4, 6, 3), bottleneck=False, width=8)
  elif case == "other_width":
    state = torchvision_resnet_state((2, 2, 2, 2), bottleneck=False, width=16)
  elif case == "missing":
    del state["layer4.1.bn2.running_var"]
  elif case == "extra":
    state["layer4.1.conv3.weight"] = state["layer4.1.conv2.weight"]
  elif case == "deep_stem":
    state["conv1.0.weight"] = state.pop("conv1.weight")
  elif case == "no_backbone":
    model_config = ml_collections.ConfigDict({"name": "unet", "features": 4})
  path = save_safetensors(state, tmp_path / "weights.safetensors")
  weights_file = str(tmp_path / "absent.pth") if case == "no_file" else path
  model, abstract = _model_and_abstract_variables(model_config)
  with pytest.raises((ValueError, FileNotFoundError)) as info:
    pretrained.backbone_values(model, weights_file, abstract)
  assert message in str(info.value)
  assert "config.model.backbone_weights=" in str(info.value)


@pytest.mark.parametrize(
  "config_file,arch",
  [
    ("psp.py:voc2012", "resnet50"),
    ("deeplabv3plus.py:resnet101,cityscapes", "resnet101"),
    ("fcn8s.py:paper", "vgg16"),
    ("segnet.py:paper", "vgg16_bn"),
  ],
)
def test_paper_configs_take_their_imagenet_backbone(config_file, arch, monkeypatch):
  """Shapes only (`jax.eval_shape`): the full-size models and torchvision's files."""
  from jaxseg import config_files
  from jaxseg.models import create_model

  config = config_files.load_config(os.path.join(ROOT, "configs", config_file))
  assert config.model.backbone == arch
  if arch.startswith("resnet"):
    blocks = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}[arch]
    tensors = torchvision_resnet_state(blocks, bottleneck=True, width=64)
  else:
    tensors = _torchvision_vgg(batch_norm=arch == "vgg16_bn")
  monkeypatch.setattr(pretrained, "read_state_dict", lambda path: (tensors, {}))
  config.model.backbone_weights = f"{arch}.pth"
  model = create_model(config, 21)
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  )
  values, summary = pretrained.backbone_values(model, config.model.backbone_weights, abstract)
  backbone = pretrained.flatten_dict({k: abstract[k]["backbone"] for k in abstract})
  assert len(values) == len(backbone) and summary.startswith(f"Backbone {arch} from")
  assert ("params/backbone/fc6/kernel (the model has no fc6/fc7)" in summary) == (
    arch == "vgg16_bn"
  )


def test_torch_file_without_torch_says_what_to_install(tmp_path, monkeypatch):
  path = tmp_path / "resnet18.pth"
  path.write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError.
  with pytest.raises(ImportError, match=r"requirements-convert\.txt"):
    pretrained.load(str(path))


@pytest.mark.slow
def test_training_starts_from_the_backbone_file(data_dir, tmp_path, capsys):
  state = torchvision_resnet_state((2, 2, 2, 2), bottleneck=False, width=8)
  weights = save_safetensors(state, tmp_path / "r18.safetensors")
  config = one_step_at_learning_rate_zero(data_dir, **{"model.backbone_weights": weights})
  loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert "Backbone resnet18 from" in capsys.readouterr().out
  params = saved_params(str(tmp_path / "run"))
  expected, _, _ = pretrained.load(weights)
  for key, value in expected.items():
    if key.startswith("params/"):
      np.testing.assert_array_equal(params["backbone/" + key.removeprefix("params/")], value)
  assert len([k for k in params if k.startswith("backbone/")]) == len(
    [k for k in expected if k.startswith("params/")]
  )


# --- Parity with torchvision's and timm's own forward passes (torch needed). ---


def _max_difference(module, weights: str, expected: dict) -> float:
  flat, _, _ = pretrained.load(weights)
  image = expected.pop("image")
  forward = jax.jit(lambda v, x: module.apply(v, x, train=False))
  last, endpoints = forward(pretrained.unflatten_dict(flat), image)
  endpoints = {**endpoints, "last": last}
  return max(_rel(endpoints[k], v) for k, v in expected.items())


@needs_torch
@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101"])
@pytest.mark.parametrize("output_stride", [32, 8])
def test_resnet_endpoints_equal_torchvision(tmp_path, arch, output_stride):
  weights, expected = torch_reference(tmp_path, f"torchvision:{arch}", output_stride)
  assert pretrained.load(weights)[1] == arch  # A .pth, read with torch.load(weights_only=True).
  module = backbones.BACKBONES[arch].module(output_stride=output_stride)
  worst = _max_difference(module, weights, expected)
  print(f"\n{arch} output stride {output_stride}: max relative difference {worst:.2e}")
  assert worst <= 1e-4


@needs_torch
@pytest.mark.parametrize(
  "arch,output_stride",
  [("mobilenet_v2", 32), ("mobilenet_v3_large", 32), ("mobilenet_v3_large", 16)],
)
def test_mobilenet_endpoints_equal_torchvision(tmp_path, arch, output_stride):
  # Every layer of torchvision's `features`: hard-swish, squeeze-excitation,
  # BatchNorm epsilon and (at 16) the dilated last stage as torchvision's.
  weights, expected = torch_reference(tmp_path, f"torchvision:{arch}", output_stride)
  _, found, unused = pretrained.load(weights)
  assert found == arch and unused and all(k.startswith("classifier.") for k in unused)
  module = backbones.BACKBONES[arch].module(output_stride=output_stride)
  worst = _max_difference(module, weights, expected)
  print(f"\n{arch} output stride {output_stride}: max relative difference {worst:.2e}")
  assert worst <= 1e-4


@needs_torch
@pytest.mark.parametrize("arch", ["vgg16", "vgg16_bn"])
def test_vgg_endpoints_equal_torchvision(tmp_path, arch):
  weights, expected = torch_reference(tmp_path, f"torchvision:{arch}", size=224)
  _, found, unused = pretrained.load(weights)
  assert found == arch and unused == ["classifier.6.bias", "classifier.6.weight"]
  module = vgg.VGG(batch_norm=arch == "vgg16_bn", fc_features=4096)
  worst = _max_difference(module, weights, expected)
  print(f"\n{arch}: max relative difference {worst:.2e} (pool1..pool5, fc7)")
  assert worst <= 1e-4


@needs_torch
def test_timm_files_load_the_same_way(tmp_path):
  # timm's VGG keeps fc6/fc7 as convolutions (`pre_logits`); saved as .safetensors.
  weights, expected = torch_reference(tmp_path / "vgg", "timm:vgg16", size=224)
  _, arch, unused = pretrained.load(weights)
  assert arch == "vgg16" and unused == ["head.fc.bias", "head.fc.weight"]
  assert _max_difference(vgg.VGG(fc_features=4096), weights, expected) <= 1e-4
  # timm's ResNet names its tensors as torchvision does.
  weights, expected = torch_reference(tmp_path / "resnet", "timm:resnet50")
  assert pretrained.load(weights)[1] == "resnet50"
  expected["last"] = expected.pop("stride32")
  assert _max_difference(resnet.ResNet50(), weights, expected) <= 1e-4
