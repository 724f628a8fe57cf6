"""DeepLabV3/V3+: paper-size parameter counts, atrous rates by output stride, the decoder."""

import jax
import jax.numpy as jnp

from jaxseg import config_files
from jaxseg.models import create_model, deeplab, onednn
from tests.helpers import (
  RNGS,
  conv_bn_params,
  param_count,
  score_params,
)


def test_paper_deeplab_parameter_counts():
  trunk = 23_508_032
  aspp = (
    2 * conv_bn_params(2048, 256, 1)
    + 3 * conv_bn_params(2048, 256)
    + conv_bn_params(5 * 256, 256, 1)
  )
  v3 = trunk + aspp + score_params(256, 21)
  assert param_count(deeplab.DeepLabV3(num_classes=21)) == v3 == 39_048_533
  decoder = conv_bn_params(256, 48, 1) + conv_bn_params(256 + 48, 256) + conv_bn_params(256, 256)
  assert param_count(deeplab.DeepLabV3(num_classes=21, decoder=True)) == v3 + decoder


def _conv_dilations(model, x) -> set[int]:
  """The rhs dilations of every convolution the model runs (from the jaxpr of
  its XLA form)."""
  variables = jax.eval_shape(lambda: model.init(RNGS, x, train=False))
  with onednn.backend("xla"):
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)
  found = set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        found.add(eqn.params["rhs_dilation"][0])
      for value in eqn.params.values():
        if hasattr(value, "jaxpr"):
          walk(value.jaxpr)

  walk(jaxpr.jaxpr)
  return found


def test_deeplab_rates_follow_output_stride():
  # Large enough that no rate exceeds the feature map (those run as 1×1).
  x = jnp.zeros((1, 320, 320, 3))
  for output_stride, rates in ((16, {6, 12, 18}), (8, {12, 24, 36})):
    model = deeplab._tiny(num_classes=3, output_stride=output_stride, rates=None, multi_grid=None)
    assert rates <= _conv_dilations(model, x)


def test_separable_decoder_has_fewer_parameters():
  plain = param_count(deeplab.DeepLabV3(num_classes=21, decoder=True))
  separable = param_count(deeplab.DeepLabV3(num_classes=21, decoder=True, separable=True))
  assert separable < plain


def _mobile_model(config_file: str):
  return create_model(config_files.load_config(config_file), 21)


def test_deeplabv3_mobilenet_v3_large_has_torchvisions_parameters():
  model = _mobile_model("configs/deeplabv3.py:mobilenet_v3_large")
  # torchvision's deeplabv3_mobilenet_v3_large, 21 classes, no aux head:
  # trunk + ASPP at 960 channels + the 3×3 head + classifier.
  aspp = (
    2 * conv_bn_params(960, 256, 1) + 3 * conv_bn_params(960, 256) + conv_bn_params(5 * 256, 256, 1)
  )
  assert aspp + conv_bn_params(256, 256) + score_params(256, 21) + 2_971_952 == 11_025_477
  assert param_count(model) == 11_025_477
  # torchvision's aux head (FCNHead on features4, 40 -> 10 channels).
  with_aux = model.clone(aux_channels=10, aux_endpoint="features4")
  aux = conv_bn_params(40, 10) + score_params(10, 21)
  assert param_count(with_aux) == 11_025_477 + aux


def test_deeplabv3plus_mobilenet_v2_reads_stride4_features_of_24_channels():
  model = _mobile_model("configs/deeplabv3plus.py:mobilenet_v2")
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(RNGS, x, train=False))
  assert variables["params"]["low_level"]["conv"]["kernel"].shape == (1, 1, 24, 48)
  assert "depthwise" in str(jax.tree_util.keystr(variables["params"]["decoder0"]))
