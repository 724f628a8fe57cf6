"""Precision and memory: gradient accumulation, rematerialisation, bfloat16, FSDP layout."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxseg.data import augment, pipeline, preprocessing
from jaxseg.models import onednn, pspnet
from jaxseg.parallel import sharding
from jaxseg.scoring import objective as objectives
from jaxseg.training import state as train_state
from jaxseg.training import steps
from tests.helpers import tiny_config


def _one_step(config, batch=None):
  """The state after one jitted train step on the first training batch, and its metrics."""
  mesh = sharding.make_mesh(config)
  sharding.check_batch_layout(config, mesh)
  spec, builder = pipeline.prepare(config)
  if batch is None:
    batch = next(pipeline.train_iterator(config, spec, builder, mesh))
  model, optimizer, init_state, _, _ = train_state.build(config, spec.num_classes, mesh)
  step = jax.jit(
    functools.partial(
      steps.train_step,
      model=model,
      optimizer=optimizer,
      rng=jax.random.key(1),
      augmentation=augment.Augmentation.from_config(config, spec.num_classes, spec.ignore_label),
      norm=preprocessing.from_config(config),
      objective=objectives.from_config(config, spec.num_classes, spec.ignore_label),
      micro_batches=config.grad_accum_steps,
    )
  )
  return step(init_state(), sharding.to_global(batch, mesh))


def _bn_free_fcn(data_dir, **overrides):
  config = tiny_config(data_dir, **overrides)
  config.model = ml_collections.ConfigDict(
    {"name": "fcn32s", "width_divisor": 16, "fc_features": 16, "dropout_rate": 0.0}
  )
  config.loss.class_weights = (0.5, 1.0, 2.0, 1.0, 3.0)  # Weighted: normalisation must match too.
  return config


@pytest.mark.slow
def test_gradient_accumulation_gives_the_whole_batch_update(data_dir):
  # A model with neither BatchNorm nor dropout: the update must be the same.
  whole, whole_metrics = _one_step(_bn_free_fcn(data_dir))
  accumulated, accumulated_metrics = _one_step(_bn_free_fcn(data_dir, grad_accum_steps=4))
  assert float(accumulated_metrics["loss"]) == pytest.approx(float(whole_metrics["loss"]), rel=1e-6)
  assert float(whole_metrics["grad_norm"]) > 0
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(accumulated.params), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_gradient_accumulation_of_whole_batch_losses_gives_the_whole_batch_update(data_dir):
  # Dice, Lovász and OHEM are not sums over pixels: the step differentiates
  # them on the whole batch's logits and back-propagates each slice's share.
  config = _bn_free_fcn(data_dir)
  config.loss.terms.update({"dice": 1.0, "lovasz": 0.5, "ohem": 0.5, "cross_entropy": 0.0})
  config.loss.ohem.min_kept = 64
  whole, whole_metrics = _one_step(config)
  config.grad_accum_steps = 4
  accumulated, accumulated_metrics = _one_step(config)
  for key in ("loss", "loss_dice", "loss_lovasz", "loss_ohem"):
    assert float(accumulated_metrics[key]) == pytest.approx(float(whole_metrics[key]), rel=1e-6)
  assert float(whole_metrics["grad_norm"]) > 0
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(accumulated.params), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_gradient_accumulation_with_batchnorm_trains(data_dir):
  config = tiny_config(data_dir, grad_accum_steps=2)
  state, step_metrics = _one_step(config)
  assert np.isfinite(float(step_metrics["loss"])) and int(state.step) == 1
  # Running statistics moved from their initial values, and not to what one
  # whole-batch update gives: micro-batches bring their own statistics.
  mesh = sharding.make_mesh(config)
  initial = train_state.build(config, 5, mesh)[2]().batch_stats
  whole, _ = _one_step(tiny_config(data_dir))
  for before, after, once in zip(
    jax.tree.leaves(initial),
    jax.tree.leaves(state.batch_stats),
    jax.tree.leaves(whole.batch_stats),
    strict=True,
  ):
    assert not np.array_equal(np.asarray(after), np.asarray(before))
    assert not np.array_equal(np.asarray(after), np.asarray(once))


@pytest.mark.slow
def test_rematerialised_backbone_has_the_same_parameters_and_gradients():
  image = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  labels = jax.random.randint(jax.random.key(1), (2, 64, 64), 0, 3)

  def loss_and_grads(remat):
    model = pspnet._tiny(num_classes=3, remat=remat)
    variables = model.init(jax.random.key(2), image, train=False)

    def loss(params):
      out, _ = model.apply(
        {**variables, "params": params},
        image,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": jax.random.key(3)},
      )
      logp = jax.nn.log_softmax(out["logits"])
      return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], -1))

    return variables, jax.jit(jax.value_and_grad(loss))(variables["params"])

  plain_vars, (plain_loss, plain_grads) = loss_and_grads(False)
  remat_vars, (remat_loss, remat_grads) = loss_and_grads(True)
  assert jax.tree.structure(plain_vars) == jax.tree.structure(remat_vars)
  for a, b in zip(jax.tree.leaves(plain_vars), jax.tree.leaves(remat_vars), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(remat_loss) == pytest.approx(float(plain_loss), rel=1e-6)
  for a, b in zip(jax.tree.leaves(plain_grads), jax.tree.leaves(remat_grads), strict=True):
    # Float32 rounding of sums in another order, relative to the leaf's scale.
    scale = float(np.abs(np.asarray(a)).max())
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-3 * scale)


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_keeps_state_and_loss_in_float32(data_dir):
  _, f32_metrics = _one_step(tiny_config(data_dir))
  config = tiny_config(data_dir, dtype="bfloat16")
  bf16_state, bf16_metrics = _one_step(config)
  for leaf in jax.tree.leaves((bf16_state.params, bf16_state.opt_state, bf16_state.batch_stats)):
    assert leaf.dtype == jnp.float32 or not jnp.issubdtype(leaf.dtype, jnp.floating)
  assert bf16_metrics["loss"].dtype == jnp.float32
  assert float(bf16_metrics["loss"]) == pytest.approx(float(f32_metrics["loss"]), rel=0.05)
  # The convolutions really run in bfloat16.
  model = train_state.build(config, 5, sharding.make_mesh(config))[0]
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  jaxpr = str(
    jax.make_jaxpr(lambda x: model.apply(variables, x, train=False))(jnp.zeros((1, 64, 64, 3)))
  )
  convolution = "jaxseg_onednn_conv_inference" if onednn.applies(jnp.bfloat16) else "conv_general"
  assert convolution in jaxpr and "bf16[1,32,32,8]" in jaxpr


def test_fsdp_splits_large_arrays_over_the_data_axis_only():
  assert sharding.fsdp_spec((3, 3, 64, 128), 8, 1024) == jax.sharding.PartitionSpec(
    None, None, None, "data"
  )
  assert sharding.fsdp_spec((3, 3, 64, 100), 8, 1024) == jax.sharding.PartitionSpec(
    None, None, "data"
  )
  assert sharding.fsdp_spec((256,), 8, 1024) == jax.sharding.PartitionSpec()  # Too small.
  assert sharding.fsdp_spec((3, 3, 7, 9), 8, 1) == jax.sharding.PartitionSpec()  # Indivisible.
