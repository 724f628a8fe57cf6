"""Segmentation losses. Every loss averages over labelled pixels only."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax


def cross_entropy(
  logits: jax.Array,
  labels: jax.Array,
  ignore_label: int,
  class_weights: Sequence[float] | None = None,
) -> jax.Array:
  """Softmax cross-entropy averaged over the pixels whose label is not ignored.

  Args:
    logits: `[N, H, W, C]` float logits.
    labels: `[N, H, W]` int labels in `[0, C)` or `ignore_label`.
    ignore_label: label value that contributes nothing.
    class_weights: optional `[C]` weights; pixel losses are weighted by their
      class and normalised by the summed weights (as PyTorch's `weight=`).

  Returns:
    Scalar float32 mean over non-ignored pixels of the whole (global) batch; 0
    when every pixel is ignored.
  """
  valid = labels != ignore_label
  safe_labels = jnp.where(valid, labels, 0)
  per_pixel = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), safe_labels
  )
  weight = valid.astype(jnp.float32)
  if class_weights is not None and len(class_weights):
    weight = weight * jnp.asarray(class_weights, jnp.float32)[safe_labels]
  return jnp.sum(per_pixel * weight) / jnp.maximum(jnp.sum(weight), 1e-12)


def segmentation_loss(
  outputs: dict[str, jax.Array],
  labels: jax.Array,
  *,
  ignore_label: int,
  aux_weight: float,
  class_weights: Sequence[float] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training objective: main cross-entropy plus weighted auxiliary loss.

  Args:
    outputs: the model's outputs; `logits` and, optionally, `aux_logits`.
    labels: `[N, H, W]` int labels.
    ignore_label: label value excluded from the loss.
    aux_weight: weight of the auxiliary head's loss (0.4 in PSPNet).
    class_weights: optional per-class weights of the cross-entropy.

  Returns:
    `(total, parts)` where `parts` has `loss_main` and, with an auxiliary
    head, `loss_aux` (unweighted).
  """
  parts = {"loss_main": cross_entropy(outputs["logits"], labels, ignore_label, class_weights)}
  total = parts["loss_main"]
  if "aux_logits" in outputs and aux_weight:
    parts["loss_aux"] = cross_entropy(outputs["aux_logits"], labels, ignore_label, class_weights)
    total = total + aux_weight * parts["loss_aux"]
  return total, parts
