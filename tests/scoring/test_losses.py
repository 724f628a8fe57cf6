import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.scoring import losses
from jaxseg.scoring.objective import Objective


def _logits_and_labels():
  # One row of three pixels, two classes; the third pixel is ignored and its
  # (huge) logits must not matter.
  logits = jnp.array([[[[2.0, 0.0], [0.0, 0.0], [1e4, -1e4]]]])
  labels = jnp.array([[[0, 1, 255]]])
  return logits, labels


def test_cross_entropy_averages_over_labelled_pixels_only():
  logits, labels = _logits_and_labels()
  loss = jax.jit(losses.cross_entropy, static_argnums=2)(logits, labels, 255)
  expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_of_fully_ignored_batch_is_zero():
  logits, _ = _logits_and_labels()
  assert float(losses.cross_entropy(logits, jnp.full((1, 1, 3), 255), 255)) == 0.0


def test_segmentation_loss_adds_weighted_auxiliary_loss():
  logits, labels = _logits_and_labels()
  aux = jnp.zeros_like(logits)  # Uniform: log(2) per labelled pixel.
  fn = jax.jit(Objective(aux_weight=0.4))
  total, parts = fn({"logits": logits, "aux_logits": aux}, labels)
  main = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
  assert float(parts["loss_main"]) == pytest.approx(main, rel=1e-6)
  assert float(parts["loss_aux"]) == pytest.approx(math.log(2.0), rel=1e-6)
  assert float(total) == pytest.approx(main + 0.4 * math.log(2.0), rel=1e-6)


def test_several_auxiliary_heads_each_weigh_aux_weight():
  logits, labels = _logits_and_labels()
  uniform = jnp.zeros_like(logits)  # log(2) per labelled pixel.
  fn = jax.jit(Objective(aux_weight=0.4))
  total, parts = fn({"logits": logits, "aux_logits": (uniform, logits)}, labels)
  main = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
  assert float(parts["loss_aux"]) == pytest.approx(math.log(2.0) + main, rel=1e-6)
  assert float(total) == pytest.approx(main + 0.4 * (math.log(2.0) + main), rel=1e-6)


def test_ignore_label_gets_no_gradient():
  logits, labels = _logits_and_labels()
  grad = jax.grad(losses.cross_entropy)(logits, labels, 255)
  np.testing.assert_array_equal(grad[0, 0, 2], 0.0)
  assert np.all(np.abs(grad[0, 0, :2]) > 0)


def test_class_weights_weight_pixels_and_normalise_by_their_sum():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 3, 3)), jnp.float32)
  labels = jnp.asarray([[[0, 1, 2], [2, 255, 1]]])
  weights = (0.5, 2.0, 1.0)
  got = jax.jit(lambda x, y: losses.cross_entropy(x, y, 255, weights))(logits, labels)
  logp = jax.nn.log_softmax(logits, -1)
  num = den = 0.0
  for (i, j), y in np.ndenumerate(np.asarray(labels[0])):
    if y != 255:
      num += -weights[y] * float(logp[0, i, j, y])
      den += weights[y]
  np.testing.assert_allclose(float(got), num / den, rtol=1e-5)


def _example():
  """Two 3x4 images, four classes (class 3 absent), three ignored pixels.

  The pinned values below come from segmentation_models_pytorch 0.6.0's
  losses (DiceLoss, TverskyLoss, LovaszLoss, its `_lovasz_softmax`) on these
  arrays, run offline with torch (not a test dependency).
  """
  rng = np.random.default_rng(7)
  logits = (2 * rng.normal(size=(2, 3, 4, 4))).astype(np.float32)
  labels = rng.integers(0, 3, size=(2, 3, 4))
  labels[0, 0, :2] = 255
  labels[1, 2, 3] = 255
  return jnp.asarray(logits), jnp.asarray(labels)


def _binary_example():
  """The example's first two channels as background/foreground logits."""
  logits, labels = _example()
  return logits[..., :2], jnp.where(labels == 255, 255, (labels == 1).astype(jnp.int32))


SMP_VALUES = [
  (losses.dice, {}, 0.60096705),
  (losses.dice, {"smooth": 1.0, "classes": (1, 2)}, 0.639747739),
  (losses.dice, {"class_weights": (0.5, 2.0, 1.0, 3.0)}, 0.410542697),
  (losses.tversky, {"alpha": 0.3, "beta": 0.7, "gamma": 4 / 3}, 0.516378999),
  (losses.lovasz_softmax, {}, 0.852817595),
  (losses.lovasz_softmax, {"per_image": True}, 0.849225581),
  (losses.lovasz_softmax, {"classes": "all"}, 0.871909559),
]


@pytest.mark.parametrize("fn, options, expected", SMP_VALUES)
def test_values_equal_segmentation_models_pytorch(fn, options, expected):
  logits, labels = _example()
  got = jax.jit(lambda x, y: fn(x, y, 255, **options))(logits, labels)
  assert float(got) == pytest.approx(expected, rel=2e-6)


@pytest.mark.parametrize("per_image, expected", [(True, 2.78602052), (False, 2.70529938)])
def test_lovasz_hinge_equals_the_authors_on_the_logit_margin(per_image, expected):
  # smp's LovaszLoss("binary") on margin = logit[1] - logit[0].
  logits, labels = _binary_example()
  got = jax.jit(lambda x, y: losses.lovasz_hinge(x, y, 255, per_image=per_image))(logits, labels)
  assert float(got) == pytest.approx(expected, rel=2e-6)


def test_focal_is_lin_et_al_on_the_softmax():
  logits, labels = _example()
  alpha = (0.25, 1.0, 0.5, 2.0)
  got = jax.jit(lambda x, y: losses.focal(x, y, 255, gamma=2.0, alpha=alpha))(logits, labels)
  x, y = np.asarray(logits, np.float64), np.asarray(labels)
  p = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
  terms = [
    -alpha[c] * (1 - p[i][c]) ** 2 * np.log(p[i][c]) for i, c in np.ndenumerate(y) if c != 255
  ]
  assert float(got) == pytest.approx(np.mean(terms), rel=1e-5)
  # gamma 0, no alpha: cross-entropy.
  ce = losses.cross_entropy(logits, labels, 255)
  assert float(losses.focal(logits, labels, 255, gamma=0.0)) == pytest.approx(float(ce), rel=1e-6)


def _mmseg_ohem_weight(logits, labels, thresh, min_kept):
  """mmsegmentation's OHEMPixelSampler.sample, transcribed to numpy."""
  x = np.asarray(logits, np.float64)
  label = np.asarray(labels)
  valid = label != 255
  prob = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
  prob = np.take_along_axis(prob, np.where(valid, label, 0)[..., None], -1)[..., 0]
  weight = np.zeros(label.shape)
  sort_prob = np.sort(prob[valid])
  k = min(min_kept * label.shape[0], sort_prob.size - 1)
  min_threshold = sort_prob[k] if sort_prob.size else 0.0
  threshold = max(min_threshold, thresh)
  weight[valid] = prob[valid] < threshold
  return weight


@pytest.mark.parametrize("thresh, min_kept", [(0.7, 2), (0.3, 1), (0.05, 0), (0.7, 1000)])
def test_ohem_keeps_mmsegmentations_pixels(thresh, min_kept):
  logits, labels = _example()
  kept = losses.ohem_pixels(logits, labels, 255, thresh=thresh, min_kept=min_kept)
  expected = _mmseg_ohem_weight(logits, labels, thresh, min_kept)
  np.testing.assert_array_equal(np.asarray(kept), expected)
  weights = (0.5, 2.0, 1.0, 3.0)
  got = jax.jit(
    lambda x, y: losses.ohem_cross_entropy(
      x, y, 255, thresh=thresh, min_kept=min_kept, class_weights=weights
    )
  )(logits, labels)
  x, y = np.asarray(logits, np.float64), np.asarray(labels)
  logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
  keep = _mmseg_ohem_weight(logits, labels, thresh, min_kept)
  num = sum(-weights[c] * logp[i][c] * keep[i] for i, c in np.ndenumerate(y) if c != 255)
  den = sum(weights[c] for c in y.ravel() if c != 255)
  assert float(got) == pytest.approx(num / den, rel=1e-5)


def test_ohem_keeping_every_pixel_is_cross_entropy():
  logits, labels = _example()
  ce = losses.cross_entropy(logits, labels, 255)
  ohem = losses.ohem_cross_entropy(logits, labels, 255, thresh=1.0, min_kept=0)
  assert float(ohem) == pytest.approx(float(ce), rel=1e-6)


ALL_TERMS = [
  (losses.cross_entropy, {}),
  (losses.focal, {"gamma": 0.5}),
  (losses.ohem_cross_entropy, {"min_kept": 1}),
  (losses.dice, {}),
  (losses.tversky, {"gamma": 0.75}),
  (losses.lovasz_softmax, {}),
  (losses.lovasz_softmax, {"per_image": True, "classes": "all"}),
  (losses.lovasz_hinge, {}),
  (losses.lovasz_hinge, {"per_image": False}),
]


@pytest.mark.parametrize("fn, options", ALL_TERMS)
def test_every_term_is_finite_with_finite_gradients_in_edge_cases(fn, options):
  binary = fn is losses.lovasz_hinge
  logits, labels = _binary_example() if binary else _example()
  value_and_grad = jax.jit(jax.value_and_grad(lambda x, y: fn(x, y, 255, **options)))
  # Saturated logits, so that probabilities are exactly 0 or 1 somewhere.
  cases = {
    "absent class": (logits * 30, labels),
    "every pixel ignored": (logits, jnp.full_like(labels, 255)),
    "one pixel": (logits[:1, :1, 2:3], labels[:1, :1, 2:3]),
  }
  for case, (x, y) in cases.items():
    value, grad = value_and_grad(x, y)
    assert np.isfinite(float(value)), case
    assert np.isfinite(np.asarray(grad)).all(), case
    if case == "every pixel ignored":
      assert float(value) == 0.0 and not np.asarray(grad).any(), case


@pytest.mark.parametrize("fn, options", ALL_TERMS)
def test_ignored_pixels_change_nothing(fn, options):
  binary = fn is losses.lovasz_hinge
  logits, labels = _binary_example() if binary else _example()
  loss = jax.jit(lambda x: fn(x, labels, 255, **options))
  noisy = jnp.where((labels == 255)[..., None], 1e3 * jnp.sign(logits), logits)
  assert float(loss(noisy)) == pytest.approx(float(loss(logits)), rel=1e-6)
  grad = jax.jit(jax.grad(loss))(logits)
  assert not np.asarray(grad)[np.asarray(labels) == 255].any()


def test_objective_sums_weighted_terms_and_reports_each():
  logits, labels = _example()
  objective = Objective(terms=(("cross_entropy", 1.0, {}), ("dice", 0.5, {"smooth": 1.0})))
  total, parts = jax.jit(objective)({"logits": logits}, labels)
  ce = float(losses.cross_entropy(logits, labels, 255))
  dice = float(losses.dice(logits, labels, 255, smooth=1.0))
  assert float(parts["loss_cross_entropy"]) == pytest.approx(ce, rel=1e-6)
  assert float(parts["loss_dice"]) == pytest.approx(dice, rel=1e-6)
  assert float(total) == pytest.approx(ce + 0.5 * dice, rel=1e-6)
  assert objective.whole_batch and not Objective().whole_batch


def test_pixel_sum_terms_of_micro_batches_add_up_to_the_batch():
  logits, labels = _example()
  objective = Objective(
    terms=(("cross_entropy", 1.0, {}), ("focal", 2.0, {"gamma": 2.0, "alpha": ()})),
    class_weights=(0.5, 2.0, 1.0, 3.0),
  )
  whole, _ = objective({"logits": logits}, labels)
  halves = [objective({"logits": logits[i : i + 1]}, labels[i : i + 1], labels)[0] for i in (0, 1)]
  assert float(sum(halves)) == pytest.approx(float(whole), rel=1e-6)
  with pytest.raises(ValueError, match="whole batch"):
    Objective(terms=(("dice", 1.0, {}),))({"logits": logits[:1]}, labels[:1], labels)


def _berman_lovasz_softmax(probs, labels):
  """The authors' `lovasz_softmax_flat` (classes='present'), in numpy."""
  losses_ = []
  for c in range(probs.shape[-1]):
    fg = (labels == c).astype(np.float64)
    if not fg.any():
      continue
    errors = np.abs(fg - probs[:, c])
    order = np.argsort(-errors, kind="stable")
    gt = fg[order]
    jaccard = 1 - (gt.sum() - np.cumsum(gt)) / (gt.sum() + np.cumsum(1 - gt))
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    losses_.append(errors[order] @ jaccard)
  return np.mean(losses_)


def test_lovasz_with_tied_errors_equals_the_authors():
  # Logits on a coarse grid give many equal probabilities (ties in the sort).
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.integers(-2, 3, size=(2, 6, 7, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, size=(2, 6, 7)))
  probs = np.asarray(jax.nn.softmax(logits), np.float64).reshape(-1, 3)
  expected = _berman_lovasz_softmax(probs, np.asarray(labels).ravel())
  value, grad = jax.jit(jax.value_and_grad(lambda x: losses.lovasz_softmax(x, labels, 255)))(logits)
  assert float(value) == pytest.approx(expected, rel=1e-5)
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).sum() > 0
