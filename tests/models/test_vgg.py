import math

import jax
import jax.numpy as jnp
import pytest

from jaxseg.models import vgg


def _variables(model, shape=(1, 64, 64, 3)):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("model,count", [(vgg.VGG16(), 14_714_688), (vgg.VGG16BN(), 14_723_136)])
def test_convolutional_trunk_parameter_counts_match_torchvision(model, count):
  assert _count(_variables(model)["params"]) == count


def test_parameter_names_follow_torchvision_features_indices():
  plain = _variables(vgg.VGG16())["params"]["features"]
  assert sorted(plain, key=int) == [
    "0",
    "2",
    "5",
    "7",
    "10",
    "12",
    "14",
    "17",
    "19",
    "21",
    "24",
    "26",
    "28",
  ]
  bn = _variables(vgg.VGG16BN())["params"]["features"]
  assert {"0", "1", "3", "4", "7", "8", "40", "41"} <= set(bn)
  assert set(bn["1"]) == {"scale", "bias"} and bn["40"]["kernel"].shape == (3, 3, 512, 512)


def test_fc_layers_are_convolutionalised():
  params = _variables(vgg.VGG16(fc_features=4096))["params"]
  assert params["fc6"]["kernel"].shape == (7, 7, 512, 4096)
  assert params["fc7"]["kernel"].shape == (1, 1, 4096, 4096)


@pytest.mark.parametrize("size", [(64, 64), (70, 45)])
def test_endpoint_strides(size):
  model = vgg.VGG16BN(width=4, pool_indices=True)
  x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
  _, endpoints = jax.eval_shape(
    lambda v, x: model.apply(v, x, train=False), _variables(model, (1, *size, 3)), x
  )
  h, w = size
  for i in range(1, 6):
    h, w = -(-h // 2), -(-w // 2)  # Ceil-mode pooling.
    assert endpoints[f"pool{i}"].shape[1:3] == (h, w)
    assert endpoints[f"pool{i}_indices"].shape == endpoints[f"pool{i}"].shape
    if i >= 2:  # The same maps by stride, as every backbone names them.
      assert endpoints[f"stride{2**i}"].shape == endpoints[f"pool{i}"].shape
  assert set(endpoints) <= set(vgg.ENDPOINTS)
