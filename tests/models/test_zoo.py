"""Every registered model: logits at input resolution for any H×W.

Tiny variants (the `_tiny` partial of each model file) are run for real at
two input sizes, with exact parameter counts; each network's paper-size
counts are in its own test module (`jax.eval_shape`, derived by hand).
"""

import functools

import jax
import jax.numpy as jnp
import pytest

from jaxseg.models import (
  MODELS,
  deeplab,
  fastscnn,
  fcn,
  lraspp,
  pspnet,
  segformer,
  segnet,
  unet,
  upernet,
)
from tests.helpers import RNGS, tree_size

TINY = {
  "fcn32s": (functools.partial(fcn._tiny, stride=32), 83_255),
  "fcn16s": (functools.partial(fcn._tiny, stride=16), 83_354),
  "fcn8s": (functools.partial(fcn._tiny, stride=8), 83_405),
  "segnet": (segnet._tiny, 116_387),
  "unet": (unet._tiny, 122_103),
  "pspnet": (pspnet._tiny, 201_798),
  "deeplabv3": (deeplab._tiny, 207_931),
  "deeplabv3plus": (functools.partial(deeplab._tiny, decoder=True), 213_835),
  "lraspp": (lraspp._tiny, 3_002_878),
  "fastscnn": (fastscnn._tiny, 22_513),
  "segformer": (segformer._tiny, 53_467),
  "upernet": (upernet._tiny, 60_830),
}


def test_every_registered_model_has_a_tiny_variant_here():
  assert set(TINY) == set(MODELS)


# LR-ASPP's tiny variant keeps MobileNetV3-Large's fifteen blocks: seconds to compile.
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "lraspp" else n for n in sorted(TINY)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(48, 48), (37, 53)])
def test_tiny_model_runs_at_any_size(name, size):
  make, count = TINY[name]
  model = make(num_classes=3)
  x = jax.random.normal(jax.random.key(2), (2, *size, 3))
  # Jitted: one compilation per function instead of one per operation.
  variables = jax.jit(lambda x: model.init(RNGS, x, train=True))(x)
  assert tree_size(variables["params"]) == count
  rngs = {"dropout": jax.random.key(3)}
  train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], rngs=rngs))
  out, _ = train(variables, x)
  assert out["logits"].shape == (2, *size, 3) and out["logits"].dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out["logits"])))
  eval_out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert set(eval_out) == {"logits"} and eval_out["logits"].shape == (2, *size, 3)
