"""FCN: the score maps line up with the input, in the authors' geometry and in ours.

A network whose kernels are all mirror-symmetric computes a mirror-symmetric
function exactly when every crop and upsampling keeps the maps centred on the
input: flipping the image must flip the logits. An offset one pixel off (a
crop of 18 instead of 19, or the half-coarse-pixel shift of a 2× up-convolution
left in) breaks it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models import fcn, onednn
from tests.helpers import RNGS, param_count, score_params


def _mirror_symmetric(params):
  """Every kernel averaged with its left-right mirror image (axis 1 is W)."""
  return jax.tree_util.tree_map_with_path(
    lambda path, x: (x + x[:, ::-1]) / 2 if path[-1].key == "kernel" else x, params
  )


def _logits(model, variables, image):
  return model.apply(variables, image, train=False)["logits"]


# input_padding=100 keeps every pooled map even-sized (so the pools are
# mirror-symmetric too) when the input is 32k - 198 pixels wide: 58, 90.
@pytest.mark.parametrize("input_padding,size", [(100, 58), (100, 90), (0, 64), (0, 96)])
@pytest.mark.parametrize("stride", [32, 16, 8])
def test_logits_are_centred_on_the_input(stride, input_padding, size):
  model = fcn._tiny(num_classes=3, stride=stride, input_padding=input_padding)
  image = jax.random.normal(jax.random.key(2), (1, size, size, 3))
  variables = model.init(RNGS, image, train=False)
  # Random skip scores (they start at zero) so the skips' alignment counts too.
  params = jax.tree.map(
    lambda x: x + 0.05 * jax.random.normal(jax.random.key(3), x.shape), variables["params"]
  )
  variables = {**variables, "params": _mirror_symmetric(params)}
  logits = _logits(model, variables, image)
  mirrored = _logits(model, variables, image[:, :, ::-1])
  assert logits.shape == (1, size, size, 3)
  np.testing.assert_allclose(mirrored[:, :, ::-1], logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_input_padding_keeps_the_parameter_tree(stride):
  shapes = lambda padding: jax.eval_shape(
    functools.partial(
      fcn._tiny(num_classes=5, stride=stride, input_padding=padding).init, train=False
    ),
    RNGS,
    jnp.zeros((1, 64, 64, 3)),
  )["params"]
  assert jax.tree.map(lambda x: x.shape, shapes(0)) == jax.tree.map(lambda x: x.shape, shapes(100))


def test_without_input_padding_the_work_is_a_tenth_on_small_crops():
  def flops(padding):
    model = fcn._tiny(num_classes=5, stride=8, input_padding=padding)
    image = jnp.zeros((1, 64, 64, 3))
    variables = jax.eval_shape(functools.partial(model.init, train=False), RNGS, image)
    apply = jax.jit(functools.partial(model.apply, train=False))
    with onednn.backend("xla"):  # XLA counts no FLOPs inside custom calls.
      return apply.lower(variables, image).compile().cost_analysis()["flops"]

  # 64 + 200 padded pixels per side: (264 / 64)^2 = 17x the pixels.
  assert flops(100) > 10 * flops(0)


def test_input_padding_must_be_the_papers_or_none():
  model = fcn._tiny(num_classes=3, stride=32, input_padding=50)
  with pytest.raises(ValueError, match="input_padding"):
    model.init(RNGS, jnp.zeros((1, 64, 64, 3)), train=False)


VGG16_WITH_FC = 14_714_688 + (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096)


# The upsamplings are fixed bilinear interpolations (the authors' released
# nets): no parameters. The paper's 134M.
@pytest.mark.parametrize(
  "stride,extra",
  [
    (32, score_params(4096, 21)),
    (16, score_params(4096, 21) + score_params(512, 21)),
    (8, score_params(4096, 21) + score_params(512, 21) + score_params(256, 21)),
  ],
)
def test_paper_fcn_parameter_counts(stride, extra):
  assert param_count(fcn.FCN(num_classes=21, stride=stride)) == VGG16_WITH_FC + extra


def test_fcn_learned_upsampling_learns_the_2x_ones_only():
  fixed = param_count(fcn.FCN(num_classes=21, stride=8))
  learned = param_count(fcn.FCN(num_classes=21, stride=8, learned_upsampling=True))
  assert learned - fixed == 2 * 4 * 4 * 21 * 21  # upscore2, upscore_pool4; not upscore8.


def test_at_once_skip_scales_equal_scaled_skip_kernels():
  # The paper's "at-once" FCN-8s multiplies pool4 and pool3 by 0.01 and
  # 0.0001 before their score layers: the same as those kernels scaled.
  scales = (0.01, 0.0001)
  image = jax.random.normal(jax.random.key(2), (1, 64, 64, 3))
  plain = fcn._tiny(num_classes=3, stride=8, input_padding=0)
  variables = plain.init(RNGS, image, train=False)
  params = jax.tree.map(
    lambda x: x + 0.05 * jax.random.normal(jax.random.key(3), x.shape), variables["params"]
  )
  scaled_kernels = {
    **params,
    **{
      name: {**params[name], "kernel": params[name]["kernel"] * s}
      for name, s in zip(("score_pool4", "score_pool3"), scales, strict=True)
    },
  }
  at_once = fcn._tiny(num_classes=3, stride=8, input_padding=0, skip_scales=scales)
  got = _logits(at_once, {**variables, "params": params}, image)
  want = _logits(plain, {**variables, "params": scaled_kernels}, image)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert not np.allclose(got, _logits(plain, {**variables, "params": params}, image), atol=1e-3)
  with pytest.raises(ValueError, match="skip_scales"):
    fcn._tiny(num_classes=3, stride=8, skip_scales=(0.1,)).init(RNGS, image, train=False)
