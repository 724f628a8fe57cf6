"""The shared heads on their own: shapes, branches and parameter names."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg.models import heads


def _init(module, *args, **kw):
  return module.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, *args, **kw)


def test_pyramid_pooling_concatenates_one_branch_per_bin():
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 16))
  module = heads.PyramidPooling((1, 2, 3, 6), 4)
  variables = _init(module, x, train=False)
  y = module.apply(variables, x, train=False)
  assert y.shape == (2, 12, 12, 16 + 4 * 4)
  np.testing.assert_array_equal(y[..., :16], x)  # The input passes through.
  # The 1×1 bin is one value per image: constant over the map.
  first = y[..., 16:20]
  np.testing.assert_allclose(first, jnp.broadcast_to(first[:, :1, :1], first.shape), atol=1e-6)
  assert sorted(variables["params"]) == ["branch0", "branch1", "branch2", "branch3"]


def test_aspp_has_five_branches_and_a_projection():
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 16))
  module = heads.ASPP((1, 2, 3), features=8)
  variables = _init(module, x, train=False)
  assert module.apply(variables, x, train=False).shape == (1, 8, 8, 8)
  assert sorted(variables["params"]) == [
    "atrous0", "atrous1", "atrous2", "conv1x1", "image_pool", "project",
  ]  # fmt: skip
  assert variables["params"]["project"]["conv"]["kernel"].shape == (1, 1, 5 * 8, 8)


class _Plus(nn.Module):
  """The decoder and the two output functions inside a network, as DeepLab uses them."""

  num_classes: int = 3
  aux_channels: int = 4
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, low, *, train):
    x = heads.deeplabv3plus_decoder(
      x, low, low_level_features=4, features=8, separable=True, dtype=jnp.float32, train=train
    )
    logits = heads.logits_at(x, (32, 32), self.num_classes, jnp.float32, train=train)
    return logits, heads.auxiliary_logits(self, low, (32, 32), train=train)


def test_decoder_and_outputs_create_their_layers_in_the_network():
  x, low = jnp.ones((1, 2, 2, 16)), jnp.ones((1, 8, 8, 6))
  variables = _init(_Plus(), x, low, train=False)
  logits, aux = _Plus().apply(variables, x, low, train=True, mutable=["batch_stats"])[0]
  assert logits.shape == aux.shape == (1, 32, 32, 3) and logits.dtype == jnp.float32
  # Evaluation does not run the auxiliary head, nor does a network without one.
  assert _Plus().apply(variables, x, low, train=False)[1] is None
  assert _Plus(aux_channels=0).apply(variables, x, low, train=False)[1] is None
  # Names the network's checkpoints have always had.
  assert sorted(variables["params"]) == [
    "aux_head", "classifier", "decoder0", "decoder1", "low_level",
  ]  # fmt: skip
  assert "depthwise" in variables["params"]["decoder0"]  # separable=True.


def test_fcn_head_is_conv_bn_relu_then_a_classifier():
  x = jnp.ones((1, 6, 6, 8))
  module = heads.FCNHead(num_classes=3, features=4)
  variables = _init(module, x, train=False)
  assert module.apply(variables, x, train=False).shape == (1, 6, 6, 3)
  assert variables["params"]["classifier"]["kernel"].shape == (1, 1, 4, 3)
