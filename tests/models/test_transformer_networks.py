"""SegFormer and UPerNet (on ConvNeXt and Swin) at test sizes: shapes at
any input size, the paper's parameter counts from shapes alone, stochastic
depth, a training step end to end. Their equality with transformers' networks
is `test_transformers_parity.py`."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxseg.models import create_model, segformer, swin, transformer, upernet
from jaxseg.training import loop
from tests.helpers import logged_losses, tiny_config, tree_size

RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
TINY = {
  "segformer": segformer._tiny,
  "upernet_convnext": upernet._tiny,
  "upernet_swin": lambda **kw: upernet._tiny(backbone="_swin_tiny_test", **kw),
}


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("size", [(64, 64), (45, 37)])
def test_logits_at_any_input_size(name, size):
  model = TINY[name](num_classes=5)
  x = jax.random.normal(jax.random.key(2), (2, *size, 3))
  variables = jax.jit(lambda x: model.init(RNGS, x, train=True))(x)
  out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs=RNGS)
  assert out["logits"].shape == (2, *size, 5)
  if name.startswith("upernet"):
    assert out["aux_logits"].shape == (2, *size, 5)
  logits = model.apply(variables, x, train=False)["logits"]
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize(
  "variant,count",
  # SegFormer's paper (Table 6, ADE20K's 150 classes): 3.8, 13.7, 27.5, 47.3,
  # 64.1, 84.7 M; transformers' models of the same configuration have these exactly.
  [("mit_b0", 3_752_694), ("mit_b1", 13_715_798), ("mit_b2", 27_461_974),
   ("mit_b3", 47_337_814), ("mit_b4", 64_108_374), ("mit_b5", 84_708_694)],
)  # fmt: skip
def test_segformer_parameter_counts(variant, count):
  model = segformer.SegFormer(
    150, backbone=variant, decoder_features=256 if variant in ("mit_b0", "mit_b1") else 768
  )
  shapes = jax.eval_shape(lambda: model.init(RNGS, jnp.zeros((1, 64, 64, 3)), train=True))
  assert tree_size(shapes["params"]) == count


@pytest.mark.parametrize(
  "backbone,count",
  # transformers' UPerNet with the auxiliary head, 150 classes (its Swin also
  # keeps a final norm that no feature map goes through: 1,536 more).
  [("convnext_tiny", 60_242_636), ("swin_tiny", 59_941_862)],
)
def test_upernet_parameter_counts(backbone, count):
  model = upernet.UPerNet(150, backbone=backbone)
  shapes = jax.eval_shape(lambda: model.init(RNGS, jnp.zeros((1, 64, 64, 3)), train=True))
  assert tree_size(shapes["params"]) == count


def test_stochastic_depth_drops_whole_examples_in_training_only():
  class Branch(transformer.nn.Module):
    @transformer.nn.compact
    def __call__(self, x, train):
      return transformer.drop_path(self, x, 0.5, train=train)

  x = jnp.ones((64, 3, 3, 2))
  kept = Branch().apply({}, x, True, rngs={"dropout": jax.random.key(0)})
  per_example = np.asarray(kept).reshape(64, -1)
  assert set(np.unique(per_example)) <= {0.0, 2.0}  # Dropped, or kept and scaled by 1/(1-0.5).
  assert (per_example == per_example[:, :1]).all()  # Whole examples.
  assert 10 < (per_example[:, 0] == 0).sum() < 54
  assert (Branch().apply({}, x, False) == x).all()


def test_shifted_windows_attend_only_to_their_neighbours_before_the_roll():
  # 8×8 map, window 4, shift 2: label each pixel by its region after the roll
  # and check the mask against a brute force over every window's pixel pairs.
  mask = swin.shift_mask(8, 8, 4, 2)
  rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
  # Where each pixel of the rolled map came from, and whether two pixels were
  # neighbours there (no wrap-around across the map's edge between them).
  source_r, source_c = (rows + 2) % 8, (cols + 2) % 8
  region = (source_r < 2).astype(int) * 3 + (source_c < 2)
  windows = swin.partition(region[None, :, :, None], 4).reshape(4, 16)
  expected = np.where(windows[:, :, None] == windows[:, None, :], 0.0, -100.0)
  np.testing.assert_array_equal(mask, expected)


def test_segformer_trains_a_step_end_to_end(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.model = ml_collections.ConfigDict(
    {"name": "segformer", "backbone": "_mit_tiny", "decoder_features": 16, "weights": ""}
  )
  config.optimizer = "adamw"
  config.learning_rate = 1e-3
  create_model(config, 5)  # Every key is one the network takes.
  loop.train_and_evaluate(config, str(tmp_path))
  losses = logged_losses(str(tmp_path))
  assert len(losses) == config.num_train_steps and all(np.isfinite(list(losses.values())))
