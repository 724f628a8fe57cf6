"""The training objective a config asks for: weighted loss terms on the main
head plus cross-entropy on the auxiliary heads (`config.loss`).

    config.loss.terms.cross_entropy = 1.0
    config.loss.terms.dice = 1.0            # any of losses' terms; 0 is off
    config.loss.dice.smooth = 1.0           # each term's options under its name

`from_config` checks every field against the dataset before anything compiles
and names the key that is wrong.
"""

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from jaxseg import config_checks, errors
from jaxseg.scoring import losses

# Terms that are sums over pixels, so a split batch's shares add up.
PIXEL_SUM_TERMS = ("cross_entropy", "focal")
TERMS = ("cross_entropy", "focal", "ohem", "dice", "tversky", "lovasz", "lovasz_hinge")
_TERM_FNS = {
  "ohem": losses.ohem_cross_entropy,
  "dice": losses.dice,
  "tversky": losses.tversky,
  "lovasz": losses.lovasz_softmax,
  "lovasz_hinge": losses.lovasz_hinge,
}


@dataclasses.dataclass(frozen=True, eq=False)  # Hashed by identity, for jax.jit.
class Objective:
  """The training objective: a weighted sum of terms on the main logits, plus
  cross-entropy on each auxiliary head weighted `aux_weight`.

  Attributes:
    terms: `(name, weight, options)` for each term with a positive weight.
    ignore_label: label value excluded from every term.
    aux_weight: weight of each auxiliary head's cross-entropy (0.4 in PSPNet).
    class_weights: per-class weights of `cross_entropy`, `ohem`, `dice` and
      `tversky` (() none).
  """

  terms: tuple[tuple[str, float, Mapping], ...] = (("cross_entropy", 1.0, {}),)
  ignore_label: int = 255
  aux_weight: float = 0.4
  class_weights: tuple[float, ...] = ()

  @property
  def whole_batch(self) -> bool:
    """True when some term is not a sum over pixels, so a micro-batch's loss
    cannot be computed alone (see `gradients.loss_and_grads`)."""
    return any(name not in PIXEL_SUM_TERMS for name, _, _ in self.terms)

  def describe(self) -> str:
    """One line: `1 cross_entropy + 1 dice(classes=(1,)) (auxiliary heads: 0.4 ...)`."""

    def term(name, weight, options):
      args = ", ".join(f"{k}={v!r}" for k, v in options.items())
      return f"{weight:g} {name}" + (f"({args})" if args else "")

    text = " + ".join(term(*t) for t in self.terms)
    if self.class_weights:
      text += f", class weights {self.class_weights}"
    if self.aux_weight:
      text += f" (auxiliary heads: {self.aux_weight:g} cross_entropy)"
    return text

  def _term(self, name, options, logits, labels, batch_labels):
    y = self.ignore_label
    weights = self.class_weights or None
    if name == "cross_entropy":
      normalizer = None
      if batch_labels is not None:
        normalizer = jnp.sum(losses.label_weight(batch_labels, y, weights))
      return losses.cross_entropy(logits, labels, y, weights, normalizer)
    if name == "focal":
      normalizer = None if batch_labels is None else jnp.sum(batch_labels != y)
      return losses.focal(logits, labels, y, normalizer=normalizer, **options)
    if batch_labels is not None:  # A caller's bug (gradients.py routes these), not a user's.
      raise ValueError(f"loss term {name!r} needs the whole batch, not a micro-batch")
    if name in ("ohem", "dice", "tversky"):
      options = {**options, "class_weights": weights}
    return _TERM_FNS[name](logits, labels, y, **options)

  def __call__(
    self,
    outputs: Mapping[str, jax.Array],
    labels: jax.Array,
    batch_labels: jax.Array | None = None,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss of a model's outputs.

    Args:
      outputs: `logits` and, optionally, `aux_logits` (one array, or a tuple
        of them for several auxiliary heads).
      labels: `[N, H, W]` int labels.
      batch_labels: the whole batch's labels when `labels` is a micro-batch of
        it (pixel-sum terms only): each part is normalised by the whole batch,
        so the micro-batches' losses add up to the batch's.

    Returns:
      `(total, parts)`: `loss_main` (the weighted sum on the main head),
      `loss_<term>` per term when there are several (unweighted), and with
      auxiliary heads `loss_aux` (unweighted, summed over heads).
    """
    values = {
      name: self._term(name, options, outputs["logits"], labels, batch_labels)
      for name, _, options in self.terms
    }
    parts = {f"loss_{name}": v for name, v in values.items()} if len(values) > 1 else {}
    parts["loss_main"] = sum(weight * values[name] for name, weight, _ in self.terms)
    total = parts["loss_main"]
    if "aux_logits" in outputs and self.aux_weight:
      aux = outputs["aux_logits"]
      aux = aux if isinstance(aux, tuple | list) else (aux,)
      # Several auxiliary heads (Fast-SCNN's two) each weigh `aux_weight`.
      parts["loss_aux"] = sum(self._term("cross_entropy", {}, a, labels, batch_labels) for a in aux)
      total = total + self.aux_weight * parts["loss_aux"]
    return total, parts


def _fail(key: str, message: str):
  raise errors.InvalidInput(f"config.loss.{key}: {message}")


def _classes(key: str, value, num_classes: int) -> tuple[int, ...]:
  value = tuple(value)
  in_range = all(isinstance(c, int) and 0 <= c < num_classes for c in value)
  if not in_range or len(set(value)) != len(value):
    _fail(key, f"{value} must be distinct class indices in [0, {num_classes}) (() for all)")
  return value


def _number(key: str, value, low: float, high: float = math.inf, *, low_open=False) -> float:
  if not config_checks.in_range(value, low, high, low_open):
    _fail(key, f"{value!r} must be a number {config_checks.bound(low, high, low_open)}")
  return float(value)


def term_options(
  loss: ml_collections.ConfigDict, name: str, num_classes: int, foreground: int | None
):
  """The keyword options of term `name` from `config.loss.<name>`, checked."""
  o = loss.get(name, ml_collections.ConfigDict())
  if name == "cross_entropy":
    return {}
  if name == "focal":
    alpha = tuple(o.get("alpha", ()))
    if alpha and (len(alpha) != num_classes or min(alpha) < 0):
      _fail("focal.alpha", f"has {len(alpha)} entries; needs {num_classes} non-negative ones or ()")
    return {"gamma": _number("focal.gamma", o.get("gamma", 2.0), 0), "alpha": alpha}
  if name == "ohem":
    min_kept = o.get("min_kept", 100_000)
    if not isinstance(min_kept, int) or min_kept < 0:
      _fail("ohem.min_kept", f"{min_kept!r} must be a whole number of pixels per image, >= 0")
    return {"thresh": _number("ohem.thresh", o.get("thresh", 0.7), 0, 1, low_open=True),
            "min_kept": min_kept}  # fmt: skip
  if name in ("dice", "tversky"):
    options = {
      "smooth": _number(f"{name}.smooth", o.get("smooth", 0.0), 0),
      "classes": _classes(f"{name}.classes", o.get("classes", ()), num_classes),
    }
    if name == "tversky":
      options["alpha"] = _number("tversky.alpha", o.get("alpha", 0.5), 0)
      options["beta"] = _number("tversky.beta", o.get("beta", 0.5), 0)
      options["gamma"] = _number("tversky.gamma", o.get("gamma", 1.0), 0, low_open=True)
    return options
  if name == "lovasz":
    classes = o.get("classes", "present")
    if classes not in ("present", "all"):
      _fail("lovasz.classes", f"{classes!r} must be 'present' or 'all'")
    return {"per_image": bool(o.get("per_image", False)), "classes": classes}
  if name == "lovasz_hinge":
    if num_classes != 2:
      _fail("terms.lovasz_hinge", f"is binary; the dataset has {num_classes} classes, not 2")
    return {
      "per_image": bool(o.get("per_image", True)),
      "foreground": 1 if foreground is None else foreground,
    }
  raise AssertionError(name)


def from_config(
  config: ml_collections.ConfigDict,
  num_classes: int,
  ignore_label: int,
  foreground: int | None = None,
) -> Objective:
  """The objective `config.loss` describes for a dataset of `num_classes`.

  Args:
    config: the experiment config (reads `loss`).
    num_classes: the dataset's classes.
    ignore_label: its ignore label.
    foreground: the foreground class of a binary run (`inference.decision`),
      for `lovasz_hinge`; None: class 1.

  Raises:
    ValueError naming the `config.loss` key that is wrong.
  """
  loss = config.loss
  weights = dict(loss.get("terms", {"cross_entropy": 1.0}))
  unknown = sorted(set(weights) - set(TERMS))
  if unknown:
    _fail("terms", f"unknown term(s) {unknown}; the terms are {list(TERMS)}")
  for name, weight in weights.items():
    _number(f"terms.{name}", weight, 0)
  terms = tuple(
    (name, float(weights[name]), term_options(loss, name, num_classes, foreground))
    for name in TERMS
    if weights.get(name, 0) > 0
  )
  if not terms:
    _fail("terms", f"every weight is 0; give at least one of {list(TERMS)} a positive weight")
  class_weights = tuple(loss.get("class_weights", ()))
  if class_weights and (len(class_weights) != num_classes or min(class_weights) < 0):
    _fail(
      "class_weights",
      f"has {len(class_weights)} entries; {config.data.name!r} needs {num_classes} "
      "non-negative weights (or () for none)",
    )
  aux_weight = _number("aux_weight", loss.get("aux_weight", 0.4), 0)
  return Objective(terms, ignore_label, aux_weight, class_weights)
