"""The loss and its gradient for one batch, whole or in micro-batches.

With `k` micro-batches (`config.grad_accum_steps`) the batch is run `k`
examples-apart slices at a time, so activations are those of one slice and
the update is the whole batch's. Two ways, chosen by the objective:

- pixel-sum terms (cross-entropy, focal): each slice's loss is normalised by
  the whole batch's labelled pixels, so the slices' gradients add up;
- terms of the whole batch (Dice, Tversky, Lovász, OHEM): a forward pass over
  the slices gathers the batch's logits, the loss is differentiated by them,
  and a second pass back-propagates each slice's share of that gradient (one
  more forward pass per step).

Either way the gradient equals the whole batch's, except that BatchNorm
normalises each slice with its own statistics (and updates its running
averages k times) and dropout draws per slice.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxseg.scoring.objective import Objective

# forward(params, batch_stats, image, rng) -> (outputs, new_batch_stats)
Forward = Callable


def _split(x: jax.Array, k: int) -> jax.Array:
  """`[n, ...] -> [k, n/k, ...]`; slice i holds examples i, i + k, ...: every
  device holds a share of each, so splitting needs no communication."""
  return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def _merge(x: jax.Array) -> jax.Array:
  """The inverse of `_split`."""
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _logits(outputs: dict) -> dict:
  return {k: outputs[k] for k in ("logits", "aux_logits") if k in outputs}


def _zeros(tree):
  return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)


_add = functools.partial(jax.tree.map, jnp.add)


def loss_and_grads(
  forward: Forward,
  params,
  batch_stats,
  image: jax.Array,
  label: jax.Array,
  rng: jax.Array,
  objective: Objective,
  micro_batches: int = 1,
):
  """`(loss, parts, grads, new_batch_stats)` of one batch (see the module doc)."""

  def loss_fn(params, batch_stats, image, label, rng, batch_labels=None):
    outputs, new_stats = forward(params, batch_stats, image, rng)
    loss, parts = objective(outputs, label, batch_labels)
    return loss, (parts, new_stats)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  k = micro_batches
  if k == 1:
    (loss, (parts, batch_stats)), grads = grad_fn(params, batch_stats, image, label, rng)
    return loss, parts, grads, batch_stats
  xs = (jnp.arange(k), _split(image, k), _split(label, k))
  if not objective.whole_batch:
    return _pixel_sums(grad_fn, params, batch_stats, xs, label, rng)
  return _whole_batch(forward, objective, params, batch_stats, xs, label, rng, k)


def _pixel_sums(grad_fn, params, batch_stats, xs, label, rng):
  """Pixel-sum terms: each slice's gradient, normalised by the whole batch's
  labelled pixels (`label`), summed over the slices."""

  def accumulate(carry, xs):
    grads, stats, loss, parts = carry
    i, micro_image, micro_label = xs
    (micro_loss, (p, stats)), g = grad_fn(
      params, stats, micro_image, micro_label, jax.random.fold_in(rng, i), label
    )
    return (_add(grads, g), stats, loss + micro_loss, _add(parts, p)), None

  (_, (parts_shape, _)), _ = jax.eval_shape(
    grad_fn, params, batch_stats, xs[1][0], xs[2][0], rng, label
  )
  init = (_zeros(params), batch_stats, jnp.zeros((), jnp.float32), _zeros(parts_shape))
  (grads, batch_stats, loss, parts), _ = jax.lax.scan(accumulate, init, xs)
  return loss, parts, grads, batch_stats


def _whole_batch(forward, objective, params, batch_stats, xs, label, rng, k):
  """Terms of the whole batch: its logits gathered slice by slice, the loss
  differentiated by them, then each slice back-propagating its share."""
  rng_of = lambda i: jax.random.fold_in(rng, i)

  # Pass 1: the whole batch's logits, slice by slice; the loss and its
  # gradient with respect to them.
  def logits_of(stats, xs):
    i, micro_image, _ = xs
    outputs, stats = forward(params, stats, micro_image, rng_of(i))
    return stats, _logits(outputs)

  _, stacked = jax.lax.scan(logits_of, batch_stats, xs)
  outputs = jax.tree.map(_merge, stacked)
  loss_of = lambda o: objective(o, label)
  (loss, parts), d_outputs = jax.value_and_grad(loss_of, has_aux=True)(outputs)
  d_split = jax.tree.map(lambda d: _split(d, k), d_outputs)

  # Pass 2: each slice back-propagates its share, <d_outputs, outputs(params)>.
  def backward(carry, xs):
    grads, stats = carry
    i, micro_image, d = xs

    def share(params):
      out, new_stats = forward(params, stats, micro_image, rng_of(i))
      pairs = zip(jax.tree.leaves(_logits(out)), jax.tree.leaves(d), strict=True)
      total = sum(jnp.vdot(a.astype(jnp.float32), b.astype(jnp.float32)) for a, b in pairs)
      return total, new_stats

    g, stats = jax.grad(share, has_aux=True)(params)
    return (_add(grads, g), stats), None

  (grads, batch_stats), _ = jax.lax.scan(
    backward, (_zeros(params), batch_stats), (xs[0], xs[1], d_split)
  )
  return loss, parts, grads, batch_stats
