"""LR-ASPP on MobileNetV3-Large: torchvision's parameter count and names, a
clear error for a backbone without its taps, and (torch installed) logits
equal to torchvision's `lraspp_mobilenet_v3_large` on the same weights."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from jaxseg.models import create_model, pretrained
from tests.helpers import tree_size


def _model(**model):
  config = default.get_config()
  config.model = ml_collections.ConfigDict({"name": "lraspp", **model})
  return create_model(config, 21)


def _variables(model, shape=(1, 64, 96, 3)):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def test_parameters_equal_torchvisions_lraspp_mobilenet_v3_large():
  model = _model()
  variables = _variables(model)
  assert tree_size(variables["params"]) == 3_221_538  # torchvision, 21 classes.
  head = pretrained.flatten_dict(variables["params"]["classifier"])
  assert {k: v.shape for k, v in head.items()} == {
    "cbr/0/kernel": (1, 1, 960, 128),
    "cbr/1/scale": (128,),
    "cbr/1/bias": (128,),
    "scale/1/kernel": (1, 1, 960, 128),
    "low_classifier/kernel": (1, 1, 40, 21),
    "low_classifier/bias": (21,),
    "high_classifier/kernel": (1, 1, 128, 21),
    "high_classifier/bias": (21,),
  }
  x = jax.ShapeDtypeStruct((2, 65, 97, 3), jnp.float32)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert out["logits"].shape == (2, 65, 97, 21) and out["logits"].dtype == jnp.float32


def test_a_backbone_without_the_low_level_tap_is_named():
  with pytest.raises(ValueError, match="backbone='resnet18' has no endpoint 'features4'"):
    _model(backbone="resnet18", output_stride=16)


@pytest.mark.slow
def test_trains_a_step_on_its_own_batch_statistics():
  model = _model()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
  # Jitted: op by op, the full MobileNetV3 takes longer than one compilation.
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
  out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, x
  )
  assert np.isfinite(np.asarray(out["logits"])).all()
  before, after = variables["batch_stats"], updates["batch_stats"]
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
  assert all(jax.tree.leaves(moved))
