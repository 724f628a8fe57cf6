"""The backbone registry: every trunk returns its declared endpoints, and a
network asking for one a backbone lacks fails before tracing, naming both."""

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from configs import default
from jaxseg.models import backbones, create_model

SLIM = {
  "resnet": {"width": 8},
  "vgg": {"width": 4, "fc_features": 8, "pool_indices": True},
  "mobilenet": {},
  "mit": {},
  "convnext": {},
  "swin": {},
}


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_every_backbone_returns_its_declared_endpoints_at_their_strides(name):
  family = next(f for f in SLIM if name.lstrip("_").startswith(f))
  module = backbones.create(name, output_stride=32, **SLIM[family])
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
  _, endpoints = jax.eval_shape(lambda v: module.apply(v, x, train=False), variables)
  assert set(endpoints) <= set(backbones.BACKBONES[name].endpoints)
  for stride in (4, 8, 16, 32):
    assert endpoints[f"stride{stride}"].shape[1:3] == (64 // stride, 64 // stride)


def test_dilation_keeps_the_map_size_past_the_output_stride():
  module = backbones.create("resnet18", output_stride=8, width=8)
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
  out, endpoints = jax.eval_shape(lambda v: module.apply(v, x, train=False), variables)
  assert out.shape[1:3] == endpoints["stride16"].shape[1:3] == (8, 8)


def _config(**model):
  config = default.get_config()
  config.model = ml_collections.ConfigDict(model)
  return config


@pytest.mark.parametrize(
  "model,message",
  [
    (
      {"name": "fcn8s", "backbone": "resnet50"},
      "config.model.backbone='resnet50' has no endpoint 'fc7', which 'fcn8s' reads",
    ),
    (
      {"name": "segnet", "backbone": "resnet18"},
      "config.model.backbone='resnet18' has no endpoint 'pool5', which 'segnet' reads",
    ),
    (
      {"name": "pspnet", "backbone": "vgg16", "output_stride": 8},
      "config.model.output_stride=8: backbone 'vgg16' runs at output stride 32",
    ),
    ({"name": "deeplabv3", "backbone": "resnet9"}, "'resnet9' is not a registered backbone"),
  ],
)
def test_a_backbone_without_what_the_network_needs_is_named(model, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    create_model(_config(**model), 5)


def test_any_registered_backbone_with_the_endpoints_fits_a_head():
  # PSPNet (pyramid on the last map, auxiliary head on stride16) on a VGG16-BN trunk.
  config = _config(name="pspnet", backbone="vgg16_bn", output_stride=32, backbone_width=8)
  model = create_model(config, 5)
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(
    lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=True)
  )
  assert "features" in variables["params"]["backbone"]
  out = jax.eval_shape(
    lambda v: model.apply(v, x, train=False), {k: variables[k] for k in variables}
  )
  assert out["logits"].shape == (1, 64, 64, 5)


def test_a_setting_the_backbone_does_not_take_is_named():
  config = _config(name="deeplabv3", backbone="vgg16", output_stride=32, rates=(1, 2, 3))
  model = create_model(config, 5)
  with pytest.raises(ValueError, match=r"config\.model\.multi_grid=\(1, 2, 4\) does not apply"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_upernet_takes_a_resnet_as_well():
  config = _config(name="upernet", backbone="resnet18", head_features=16, aux_channels=8)
  model = create_model(config, 5)
  x = jnp.zeros((1, 64, 64, 3))
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(lambda: model.init(rngs, x, train=True))
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert out["logits"].shape == (1, 64, 64, 5)
