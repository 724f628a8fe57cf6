"""Every model: logits at input resolution for any H×W, and exact parameter counts.

Tiny variants (the `_tiny` partial of each model file) are run for real at
two input sizes; the paper-size networks are checked with `jax.eval_shape`
against counts derived by hand from their layer lists.
"""

import functools
import math

import jax
import jax.numpy as jnp
import pytest

from jaxseg.models import MODELS, deeplab, fcn, onednn, pspnet, segnet, unet

TINY = {
  "fcn32s": (functools.partial(fcn._tiny, stride=32), 83_255),
  "fcn16s": (functools.partial(fcn._tiny, stride=16), 83_354),
  "fcn8s": (functools.partial(fcn._tiny, stride=8), 83_405),
  "segnet": (segnet._tiny, 116_387),
  "unet": (unet._tiny, 122_103),
  "pspnet": (pspnet._tiny, 201_798),
  "deeplabv3": (deeplab._tiny, 207_931),
  "deeplabv3plus": (functools.partial(deeplab._tiny, decoder=True), 213_835),
}
RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def test_every_registered_model_has_a_tiny_variant_here():
  assert set(TINY) == set(MODELS)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("size", [(48, 48), (37, 53)])
def test_tiny_model_runs_at_any_size(name, size):
  make, count = TINY[name]
  model = make(num_classes=3)
  x = jax.random.normal(jax.random.key(2), (2, *size, 3))
  variables = model.init(RNGS, x, train=True)
  assert _count(variables["params"]) == count
  out, _ = model.apply(
    variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)}
  )
  assert out["logits"].shape == (2, *size, 3) and out["logits"].dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out["logits"])))
  eval_out = model.apply(variables, x, train=False)
  assert set(eval_out) == {"logits"} and eval_out["logits"].shape == (2, *size, 3)


def _full_count(model, size=(64, 64)) -> int:
  variables = jax.eval_shape(lambda: model.init(RNGS, jnp.zeros((1, *size, 3)), train=True))
  return _count(variables["params"])


VGG16_WITH_FC = 14_714_688 + (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096)


def _score(c_in, c):
  return c_in * c + c


# The upsamplings are fixed bilinear interpolations (the authors' released
# nets): no parameters. The paper's 134M.
@pytest.mark.parametrize(
  "stride,extra",
  [
    (32, _score(4096, 21)),
    (16, _score(4096, 21) + _score(512, 21)),
    (8, _score(4096, 21) + _score(512, 21) + _score(256, 21)),
  ],
)
def test_paper_fcn_parameter_counts(stride, extra):
  assert _full_count(fcn.FCN(num_classes=21, stride=stride)) == VGG16_WITH_FC + extra


def test_fcn_learned_upsampling_learns_the_2x_ones_only():
  fixed = _full_count(fcn.FCN(num_classes=21, stride=8))
  learned = _full_count(fcn.FCN(num_classes=21, stride=8, learned_upsampling=True))
  assert learned - fixed == 2 * 4 * 4 * 21 * 21  # upscore2, upscore_pool4; not upscore8.


def _conv_bn(c_in, c_out, k=3):
  return k * k * c_in * c_out + 2 * c_out


def test_paper_segnet_parameter_count():
  decoder = (
    3 * _conv_bn(512, 512)
    + 2 * _conv_bn(512, 512)
    + _conv_bn(512, 256)
    + 2 * _conv_bn(256, 256)
    + _conv_bn(256, 128)
    + _conv_bn(128, 128)
    + _conv_bn(128, 64)
    + _conv_bn(64, 64)
    + (9 * 64 * 21 + 21)
  )
  assert _full_count(segnet.SegNet(num_classes=21)) == 14_723_136 + decoder == 29_451_413


def test_paper_unet_parameter_count():
  widths = [64, 128, 256, 512, 1024]
  double = lambda c_in, c: _conv_bn(c_in, c) + _conv_bn(c, c)
  down = double(3, 64) + sum(double(widths[i], widths[i + 1]) for i in range(4))
  up = sum(
    (2 * 2 * widths[i + 1] * widths[i] + widths[i]) + double(2 * widths[i], widths[i])
    for i in range(4)
  )
  assert _full_count(unet.UNet(num_classes=2)) == down + up + (64 * 2 + 2) == 31_037_698


def test_paper_deeplab_parameter_counts():
  trunk = 23_508_032
  aspp = 2 * _conv_bn(2048, 256, 1) + 3 * _conv_bn(2048, 256) + _conv_bn(5 * 256, 256, 1)
  v3 = trunk + aspp + _score(256, 21)
  assert _full_count(deeplab.DeepLabV3(num_classes=21)) == v3 == 39_048_533
  decoder = _conv_bn(256, 48, 1) + _conv_bn(256 + 48, 256) + _conv_bn(256, 256)
  assert _full_count(deeplab.DeepLabV3(num_classes=21, decoder=True)) == v3 + decoder


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
  plain = _full_count(deeplab.DeepLabV3(num_classes=21, decoder=True))
  separable = _full_count(deeplab.DeepLabV3(num_classes=21, decoder=True, separable=True))
  assert separable < plain
