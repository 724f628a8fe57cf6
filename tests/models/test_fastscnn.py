"""Fast-SCNN: mmsegmentation's parameter count derived layer by layer, its
strides, and two auxiliary heads that only training sees."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.models import fastscnn
from jaxseg.scoring.objective import Objective
from tests.helpers import RNGS, conv_bn_params, param_count, score_params


def _depthwise_separable(c_in: int, c_out: int) -> int:
  return 9 * c_in + 2 * c_in + conv_bn_params(c_in, c_out, 1)


def _inverted_residual(c_in: int, c_out: int, t: int = 6) -> int:
  hidden = c_in * t
  return (
    conv_bn_params(c_in, hidden, 1) + 9 * hidden + 2 * hidden + conv_bn_params(hidden, c_out, 1)
  )


def test_parameters_equal_mmsegmentations_fast_scnn():
  num_classes = 19
  downsample = conv_bn_params(3, 32) + _depthwise_separable(32, 48) + _depthwise_separable(48, 64)
  blocks = sum(
    _inverted_residual(c_in, c_out) + 2 * _inverted_residual(c_out, c_out)
    for c_in, c_out in ((64, 64), (64, 96), (96, 128))
  )
  pyramid = 4 * conv_bn_params(128, 32, 1) + conv_bn_params(256, 128)
  fusion = 9 * 128 + 2 * 128 + conv_bn_params(128, 128, 1) + conv_bn_params(64, 128, 1)
  head = 2 * _depthwise_separable(128, 128) + score_params(128, num_classes)
  expected = downsample + blocks + pyramid + fusion + head
  assert expected == 1_399_939
  assert param_count(fastscnn.FastSCNN(num_classes, aux_channels=0)) == expected
  aux = conv_bn_params(128, 32) + conv_bn_params(64, 32) + 2 * score_params(32, num_classes)
  assert param_count(fastscnn.FastSCNN(num_classes)) == expected + aux


def test_branches_run_at_stride_8_and_32():
  model = fastscnn.FastSCNN(num_classes=3)
  x = jnp.zeros((1, 512, 1024, 3))
  variables = jax.eval_shape(lambda: model.init(RNGS, x, train=False))
  modules = ("downsample_dsconv2", "global_features", "fusion")
  _, state = jax.eval_shape(
    lambda v: model.apply(
      v, x, train=False, capture_intermediates=lambda m, method: m.name in modules
    ),
    variables,
  )
  sizes = {m: state["intermediates"][m]["__call__"][0].shape[1:3] for m in modules}
  # The learning-to-downsample output and the fusion at stride 8, the global
  # features at stride 32.
  assert sizes == {
    "downsample_dsconv2": (64, 128),
    "global_features": (16, 32),
    "fusion": (64, 128),
  }


def test_auxiliary_heads_train_and_eval_has_none():
  model = fastscnn._tiny(num_classes=3)
  x = jax.random.normal(jax.random.key(0), (2, 45, 61, 3))
  labels = jax.random.randint(jax.random.key(1), (2, 45, 61), 0, 3)
  variables = jax.jit(lambda x: model.init(RNGS, x, train=True))(x)

  def loss(params):
    out, _ = model.apply(
      {**variables, "params": params},
      x,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(2)},
    )
    assert len(out["aux_logits"]) == 2
    assert all(a.shape == (2, 45, 61, 3) for a in out["aux_logits"])
    return Objective(aux_weight=0.4)(out, labels)[0]

  grads = jax.jit(jax.grad(loss))(variables["params"])
  # Both auxiliary heads are trained.
  for head in ("aux_head0", "aux_head1"):
    assert float(jnp.abs(grads[head]["classifier"]["kernel"]).sum()) > 0
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert set(out) == {"logits"} and np.isfinite(np.asarray(out["logits"])).all()
