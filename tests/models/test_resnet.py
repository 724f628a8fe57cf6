import math

import jax
import jax.numpy as jnp
import pytest

from jaxseg.models import backbones, resnet


def _variables(model, shape=(1, 64, 64, 3)):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


# torchvision's ResNets without the final fully connected layer.
@pytest.mark.parametrize(
  "name,count",
  [
    ("resnet18", 11_176_512),
    ("resnet34", 21_284_672),
    ("resnet50", 23_508_032),
    ("resnet101", 42_500_160),
  ],
)
def test_trunk_parameter_counts_match_torchvision(name, count):
  for output_stride in (32, 8):
    variables = _variables(backbones.BACKBONES[name].module(output_stride=output_stride))
    assert _count(variables["params"]) == count


def test_parameter_names_follow_torchvision():
  params = _variables(resnet.ResNet50())["params"]
  assert set(params) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
  assert set(params["layer3"]) == {str(i) for i in range(6)}
  block = params["layer2"]["0"]
  assert set(block) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample"}
  assert block["downsample"]["0"]["kernel"].shape == (1, 1, 256, 512)
  assert set(block["downsample"]["1"]) == {"scale", "bias"}
  assert block["conv2"]["kernel"].shape == (3, 3, 128, 128)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(64, 64), (65, 97)])
def test_endpoint_shapes(output_stride, size):
  model = resnet.ResNet18(output_stride=output_stride, width=8)
  variables = _variables(model, (2, *size, 3))
  x = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
  out, endpoints = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)

  def at(stride):
    h, w = size
    for _ in range(int(math.log2(min(stride, output_stride)))):
      h, w = -(-h // 2), -(-w // 2)  # Every stride-2 layer pads: ceil(n / 2).
    return h, w

  assert endpoints["stem"].shape == (2, *at(4), 8)
  for i, stride in enumerate((4, 8, 16, 32)):
    assert endpoints[f"stride{stride}"].shape == (2, *at(stride), 8 * 2**i)
  assert out.shape == endpoints["stride32"].shape


def test_dilated_network_computes_on_real_data():
  model = resnet.ResNet18(output_stride=8, width=4)
  x = jax.random.normal(jax.random.key(1), (1, 40, 40, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  out, _ = model.apply(variables, x, train=False)
  assert out.shape == (1, 5, 5, 32) and bool(jnp.all(jnp.isfinite(out)))
