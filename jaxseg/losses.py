"""Segmentation losses. Every loss averages over labelled pixels only."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax


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


def segmentation_loss(
  outputs: dict[str, jax.Array],
  labels: jax.Array,
  *,
  ignore_label: int,
  aux_weight: float,
  class_weights: Sequence[float] | None = None,
  normalizer: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training objective: main cross-entropy plus weighted auxiliary loss.

  Args:
    outputs: the model's outputs; `logits` and, optionally, `aux_logits`
      (one array, or a tuple of them for several auxiliary heads).
    labels: `[N, H, W]` int labels.
    ignore_label: label value excluded from the loss.
    aux_weight: weight of the auxiliary head's loss (0.4 in PSPNet).
    class_weights: optional per-class weights of the cross-entropy.
    normalizer: see `cross_entropy`.

  Returns:
    `(total, parts)` where `parts` has `loss_main` and, with an auxiliary
    head, `loss_aux` (unweighted; summed over several heads).
  """
  ce = lambda logits: cross_entropy(logits, labels, ignore_label, class_weights, normalizer)
  parts = {"loss_main": ce(outputs["logits"])}
  total = parts["loss_main"]
  if "aux_logits" in outputs and aux_weight:
    aux = outputs["aux_logits"]
    # Several auxiliary heads (Fast-SCNN's two) each weigh `aux_weight`.
    parts["loss_aux"] = sum(map(ce, aux)) if isinstance(aux, tuple | list) else ce(aux)
    total = total + aux_weight * parts["loss_aux"]
  return total, parts
