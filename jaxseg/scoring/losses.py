"""Segmentation losses: the terms, and the objective a config sums them into.

Every term takes float logits `[N, H, W, C]` and int labels `[N, H, W]` whose
`ignore_label` pixels (the ignore label proper, and the padding that
augmentation fills with it) contribute nothing, gradient included. Each is
finite, with a finite gradient, when a class is absent, when every pixel is
ignored and on a single pixel. The references each term follows:

- `cross_entropy`: PyTorch's `F.cross_entropy(weight=, ignore_index=)`, mean
  over labelled pixels weighted by class.
- `focal`: softmax focal loss (Lin et al. 2017, https://arxiv.org/abs/1708.02002),
  `-alpha_t (1 - p_t)^gamma log p_t`, mean over labelled pixels.
- `ohem`: cross-entropy of mmsegmentation's `OHEMPixelSampler` pixels: those
  whose true-class probability is below `max(thresh, the min_kept-th
  smallest)`, with `min_kept` per image; normalised as `cross_entropy` over all
  labelled pixels (mmsegmentation's `avg_non_ignore=True`), so it equals
  cross-entropy when every pixel is kept.
- `dice`, `tversky`: segmentation_models_pytorch's (0.6) multiclass `DiceLoss`
  and `TverskyLoss` (soft scores over the whole batch per class, absent
  classes zeroed but counted in the mean, `smooth`, `eps=1e-7`, class weights).
- `lovasz`: Lovász-softmax (Berman et al. 2018, https://arxiv.org/abs/1705.08790),
  per batch or per image, over the present or all classes.
- `lovasz_hinge`: the binary Lovász hinge of the same paper on the margin
  `logit[foreground] - logit[background]` of a two-class model.

Cross-entropy and focal are sums over pixels: a micro-batch's share takes the
whole batch's normaliser (`batch_labels`) and the shares add up to the batch's
loss. The others depend on the whole batch at once (a batch Dice, a sort, the
OHEM threshold); `objective.Objective.whole_batch` says so, and the train step
then differentiates them on the whole batch's logits (`training.steps.train_step`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

EPS = 1e-7  # segmentation_models_pytorch's clamp of Dice/Tversky denominators.


def label_weight(
  labels: jax.Array, ignore_label: int, class_weights: Sequence[float] | None = None
) -> jax.Array:
  """Per-pixel loss weights `[N, H, W]` float32: 0 where ignored, else 1 or the
  pixel's class weight."""
  valid = labels != ignore_label
  weight = valid.astype(jnp.float32)
  if class_weights is not None and len(class_weights):
    weight = weight * jnp.asarray(class_weights, jnp.float32)[jnp.where(valid, labels, 0)]
  return weight


def _true_class_log_prob(logits: jax.Array, labels: jax.Array, ignore_label: int) -> jax.Array:
  """`log p_y` per pixel `[N, H, W]` (ignored pixels read class 0; mask them)."""
  safe = jnp.where(labels != ignore_label, labels, 0)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]


def _safe_power(x: jax.Array, gamma: float) -> jax.Array:
  """`x ** gamma` for `x >= 0` whose gradient at 0 is 0, not inf, when gamma < 1."""
  if gamma == 1:
    return x
  positive = x > 0
  return jnp.where(positive, jnp.where(positive, x, 1.0) ** gamma, 0.0 if gamma > 0 else 1.0)


def cross_entropy(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  class_weights: Sequence[float] | None = None,
  normalizer: jax.Array | None = None,
) -> jax.Array:
  """Softmax cross-entropy averaged over the pixels whose label is not ignored.

  Args:
    logits: `[N, H, W, C]` float logits.
    labels: `[N, H, W]` int labels in `[0, C)` or `ignore_label`.
    ignore_label: label value that contributes nothing.
    class_weights: optional `[C]` weights; pixel losses are weighted by their
      class and normalised by the summed weights (as PyTorch's `weight=`).
    normalizer: divide by this instead of the summed weights of `labels`; the
      summed weights of a whole batch when `labels` is one micro-batch of it,
      so that micro-batch losses add up to the batch's loss.

  Returns:
    Scalar float32 mean over non-ignored pixels of the whole (global) batch; 0
    when every pixel is ignored.
  """
  safe_labels = jnp.where(labels != ignore_label, labels, 0)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), safe_labels
  )
  weight = label_weight(labels, ignore_label, class_weights)
  if normalizer is None:
    normalizer = jnp.sum(weight)
  return jnp.sum(per_pixel * weight) / jnp.maximum(normalizer, 1e-12)


def focal(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  *,
  gamma: float = 2.0,
  alpha: Sequence[float] = (),
  normalizer: jax.Array | None = None,
) -> jax.Array:
  """Softmax focal loss `-alpha_y (1 - p_y)^gamma log p_y`, mean over labelled pixels.

  Args:
    logits, labels, ignore_label: as `cross_entropy`.
    gamma: focusing exponent; 0 is cross-entropy.
    alpha: optional `[C]` per-class factors (Lin et al.'s alpha_t); they scale
      pixel losses but not the normaliser, as in the paper.
    normalizer: the whole batch's labelled pixel count, for a micro-batch.

  Returns:
    Scalar float32; 0 when every pixel is ignored.
  """
  valid = labels != ignore_label
  log_pt = _true_class_log_prob(logits, labels, ignore_label)
  per_pixel = -_safe_power(1.0 - jnp.exp(log_pt), gamma) * log_pt
  if len(alpha):
    per_pixel = per_pixel * jnp.asarray(alpha, jnp.float32)[jnp.where(valid, labels, 0)]
  if normalizer is None:
    normalizer = jnp.sum(valid)
  return jnp.sum(jnp.where(valid, per_pixel, 0.0)) / jnp.maximum(normalizer, 1)


def ohem_pixels(
  logits: jax.Array, labels: jax.Array, ignore_label: int, *, thresh: float, min_kept: int
) -> jax.Array:
  """mmsegmentation's `OHEMPixelSampler`: `[N, H, W]` bool, the labelled pixels
  whose true-class probability is below `max(thresh, p_k)`, `p_k` the k-th
  smallest of the batch's with `k = min(min_kept * N, labelled - 1)`."""
  valid = labels != ignore_label
  prob = jax.lax.stop_gradient(jnp.exp(_true_class_log_prob(logits, labels, ignore_label)))
  # Probabilities >= 0 order as their bits do; XLA's CPU sorts integers ~8x faster.
  bits = jax.lax.bitcast_convert_type(jnp.where(valid, prob, jnp.inf), jnp.uint32)
  ranked = jnp.sort(bits.ravel())
  count = jnp.sum(valid)
  k = jnp.clip(jnp.minimum(min_kept * labels.shape[0], count - 1), 0, ranked.size - 1)
  kth = jnp.where(count > 0, jax.lax.bitcast_convert_type(ranked[k], jnp.float32), 0.0)
  return valid & (prob < jnp.maximum(kth, thresh))


def ohem_cross_entropy(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  *,
  thresh: float = 0.7,
  min_kept: int = 100_000,
  class_weights: Sequence[float] | None = None,
) -> jax.Array:
  """Cross-entropy of the hard pixels (`ohem_pixels`), normalised by the summed
  class weights of every labelled pixel, as `cross_entropy`.

  Returns:
    Scalar float32; 0 when every pixel is ignored.
  """
  kept = ohem_pixels(logits, labels, ignore_label, thresh=thresh, min_kept=min_kept)
  weight = label_weight(labels, ignore_label, class_weights)
  log_pt = _true_class_log_prob(logits, labels, ignore_label)
  return -jnp.sum(jnp.where(kept, log_pt * weight, 0.0)) / jnp.maximum(jnp.sum(weight), 1e-12)


def _probs_and_truth(logits, labels, ignore_label):
  """Softmax probabilities and one-hot truth `[N*H*W, C]`, both zero at ignored pixels."""
  c = logits.shape[-1]
  valid = (labels != ignore_label).reshape(-1, 1)
  probs = jax.nn.softmax(logits.astype(jnp.float32).reshape(-1, c), axis=-1) * valid
  truth = jax.nn.one_hot(jnp.where(valid[:, 0], labels.reshape(-1), 0), c) * valid
  return probs, truth


def _class_mean(
  loss: jax.Array,
  present: jax.Array,
  classes: Sequence[int],
  class_weights: Sequence[float] | None,
) -> jax.Array:
  """smp's reduction: absent classes count as 0 in the (weighted) mean over
  `classes` (all when empty)."""
  loss = loss * present
  weights = jnp.ones_like(loss) if not class_weights else jnp.asarray(class_weights, jnp.float32)
  if len(classes):
    index = jnp.asarray(classes)
    loss, weights = loss[index], weights[index]
  return jnp.sum(loss * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def _tversky_per_class(logits, labels, ignore_label, alpha, beta, smooth):
  """smp's `soft_tversky_score` per class over the batch, and which classes are present."""
  probs, truth = _probs_and_truth(logits, labels, ignore_label)
  intersection = jnp.sum(probs * truth, 0)
  false_pos = jnp.sum(probs, 0) - intersection
  false_neg = jnp.sum(truth, 0) - intersection
  denominator = intersection + alpha * false_pos + beta * false_neg + smooth
  return (intersection + smooth) / jnp.maximum(denominator, EPS), jnp.sum(truth, 0) > 0


def dice(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  *,
  smooth: float = 0.0,
  classes: Sequence[int] = (),
  class_weights: Sequence[float] | None = None,
) -> jax.Array:
  """Soft multiclass Dice loss as segmentation_models_pytorch's `DiceLoss`.

  Per class over the whole batch's labelled pixels, `1 - (I + smooth) /
  max(I + (FP + FN) / 2 + smooth, eps)` with soft counts `I = sum p t`,
  `FP = sum p (1 - t)`, `FN = sum (1 - p) t` (smp computes Dice as Tversky
  0.5/0.5); classes absent from the labels count 0; the mean over `classes`
  (all when empty), weighted by `class_weights` if given.

  Returns:
    Scalar float32 in [0, 1]; 0 when every pixel is ignored.
  """
  score, present = _tversky_per_class(logits, labels, ignore_label, 0.5, 0.5, smooth)
  return _class_mean(1.0 - score, present, classes, class_weights)


def tversky(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  *,
  alpha: float = 0.5,
  beta: float = 0.5,
  gamma: float = 1.0,
  smooth: float = 0.0,
  classes: Sequence[int] = (),
  class_weights: Sequence[float] | None = None,
) -> jax.Array:
  """Tversky loss as segmentation_models_pytorch's `TverskyLoss`.

  Per class `1 - (I + smooth) / max(I + alpha FP + beta FN + smooth, eps)`
  (alpha weighs false positives, beta false negatives; 0.5/0.5 is `dice`),
  reduced as `dice`, then raised to `gamma` (focal Tversky).

  Returns:
    Scalar float32; 0 when every pixel is ignored.
  """
  score, present = _tversky_per_class(logits, labels, ignore_label, alpha, beta, smooth)
  return _safe_power(_class_mean(1.0 - score, present, classes, class_weights), gamma)


def lovasz_jaccard(truth_sorted: jax.Array) -> jax.Array:
  """The Jaccard loss of the first i+1 entries predicted positive, for errors
  sorted in decreasing order and `truth_sorted` the 0/1 ground truth in that
  order; its increments are the gradient of the Lovász extension (Berman et
  al., Algorithm 1)."""
  total = jnp.sum(truth_sorted)
  intersection = total - jnp.cumsum(truth_sorted)
  union = total + jnp.cumsum(1.0 - truth_sorted)  # >= 1 everywhere.
  return 1.0 - intersection / union


def _lovasz_dot(errors: jax.Array, truth: jax.Array, valid: jax.Array) -> jax.Array:
  """`<errors sorted decreasingly, Lovász gradient>` over the valid entries of
  flat `[P]` arrays (errors >= 0, truth 0/1).

  XLA's CPU sort is ~8x faster on one integer array than on (key, index)
  pairs, so instead of an argsort each entry gets one uint32 key (the error's
  bits, which order as the floats do when >= 0, then the truth bit; ignored
  entries 0, sorting last) and finds its place in the sorted keys by binary
  search. Entries with equal keys (equal errors and truth) share their
  positions' mean gradient, where any order of them gives the same loss.
  """
  bits = jnp.where(errors > 0, jax.lax.bitcast_convert_type(errors, jnp.uint32), 0)
  keys = jnp.where(valid, ((bits << 1) | truth.astype(jnp.uint32)) + 1, 0)
  ascending = jnp.sort(keys)
  truth_sorted = jnp.where(ascending > 0, (ascending - 1) & 1, 0)[::-1].astype(jnp.float32)
  jaccard = jnp.concatenate([jnp.zeros(1), lovasz_jaccard(truth_sorted)])
  # An entry's key occupies ascending [left, right): decreasing [P - right, P - left).
  p = keys.size
  left = jnp.searchsorted(ascending, keys, side="left")
  right = jnp.searchsorted(ascending, keys, side="right")
  grad = (jaccard[p - left] - jaccard[p - right]) / (right - left)
  return jnp.sum(jnp.where(valid, errors, 0.0) * jax.lax.stop_gradient(grad))


def _lovasz_softmax_flat(probs, labels, valid, present_only: bool):
  """One Lovász-softmax over flat `[P, C]` probabilities (mean over classes)."""
  truth = jax.nn.one_hot(labels, probs.shape[-1]) * valid[:, None]
  errors = jnp.abs(truth - probs)
  per_class = jax.vmap(_lovasz_dot, in_axes=(1, 1, None))(errors, truth, valid)
  if not present_only:
    return per_class.mean()
  present = jnp.sum(truth, 0) > 0
  return jnp.sum(per_class * present) / jnp.maximum(jnp.sum(present), 1)


def lovasz_softmax(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  *,
  per_image: bool = False,
  classes: str = "present",
) -> jax.Array:
  """Lovász-softmax loss (Berman et al. 2018), the authors' `lovasz_softmax`.

  Args:
    logits, labels, ignore_label: as `cross_entropy`.
    per_image: the mean of each image's loss (images without labelled pixels
      count 0), instead of one loss over the batch's pixels.
    classes: "present" averages over the classes in the labels, "all" over
      every class.

  Returns:
    Scalar float32; 0 when every pixel is ignored.
  """
  c = logits.shape[-1]
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  flat = lambda p, y, v: _lovasz_softmax_flat(
    p.reshape(-1, c), y.reshape(-1), v.reshape(-1), classes == "present"
  )
  if per_image:
    return jax.vmap(flat)(probs, safe, valid).mean()
  return flat(probs, safe, valid)


def lovasz_hinge(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  *,
  per_image: bool = True,
  foreground: int = 1,
) -> jax.Array:
  """Binary Lovász hinge (Berman et al. 2018) of a two-class model.

  The binary logit is the margin `logits[fg] - logits[bg]` (a two-class
  softmax is a sigmoid of it), the errors `1 - margin * sign` hinged at 0.

  Args:
    logits: `[N, H, W, 2]`.
    labels, ignore_label: as `cross_entropy`; `foreground` marks the positives.
    per_image: mean of per-image losses (the authors' default for the hinge).
    foreground: index of the foreground class.

  Returns:
    Scalar float32; 0 when every pixel is ignored.
  """
  logits = logits.astype(jnp.float32)
  margin = logits[..., foreground] - logits[..., 1 - foreground]
  valid = labels != ignore_label
  positive = ((labels == foreground) & valid).astype(jnp.float32)
  errors = jax.nn.relu(1.0 - margin * (2.0 * positive - 1.0))
  flat = lambda e, t, v: _lovasz_dot(e.reshape(-1), t.reshape(-1), v.reshape(-1))
  if per_image:
    return jax.vmap(flat)(errors, positive, valid).mean()
  return flat(errors, positive, valid)
