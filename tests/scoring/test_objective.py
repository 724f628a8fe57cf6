"""`config.loss` -> the training objective, checked before anything compiles."""

import pytest

from configs import default
from jaxseg.scoring import objective


def _config(**flat):
  config = default.get_config()
  config.update_from_flattened_dict(flat)
  return config


def test_default_is_cross_entropy_with_the_aux_weight():
  built = objective.from_config(_config(), 5, 255)
  assert built.terms == (("cross_entropy", 1.0, {}),)
  assert built.aux_weight == 0.4 and not built.whole_batch


def test_terms_and_their_options_come_from_the_config():
  config = _config(**{"loss.terms.dice": 0.5, "loss.dice.smooth": 1.0, "loss.dice.classes": (1, 2),
                      "loss.terms.ohem": 2.0, "loss.ohem.min_kept": 10,
                      "loss.class_weights": (1.0, 2.0, 1.0, 1.0, 3.0)})  # fmt: skip
  built = objective.from_config(config, 5, 255)
  names = [(name, weight) for name, weight, _ in built.terms]
  assert names == [("cross_entropy", 1.0), ("ohem", 2.0), ("dice", 0.5)]
  assert dict((n, o) for n, _, o in built.terms)["dice"] == {"smooth": 1.0, "classes": (1, 2)}
  assert built.whole_batch and built.class_weights == (1.0, 2.0, 1.0, 1.0, 3.0)


@pytest.mark.parametrize(
  "flat, message",
  [
    ({"loss.terms.cross_entropy": 0.0}, r"config.loss.terms: every weight is 0"),
    ({"loss.terms.dice": -1.0}, r"config.loss.terms.dice: -1.0 must be a number >= 0"),
    ({"loss.focal.gamma": -2.0, "loss.terms.focal": 1.0}, r"config.loss.focal.gamma"),
    ({"loss.focal.alpha": (1.0, 2.0), "loss.terms.focal": 1.0}, r"config.loss.focal.alpha: has 2"),
    ({"loss.ohem.thresh": 0.0, "loss.terms.ohem": 1.0}, r"config.loss.ohem.thresh: 0.0 must be"),
    ({"loss.ohem.min_kept": -1, "loss.terms.ohem": 1.0}, r"config.loss.ohem.min_kept"),
    ({"loss.dice.classes": (0, 5), "loss.terms.dice": 1.0}, r"config.loss.dice.classes: \(0, 5\)"),
    ({"loss.tversky.gamma": 0.0, "loss.terms.tversky": 1.0}, r"config.loss.tversky.gamma"),
    ({"loss.lovasz.classes": "some", "loss.terms.lovasz": 1.0}, r"config.loss.lovasz.classes"),
    ({"loss.terms.lovasz_hinge": 1.0}, r"config.loss.terms.lovasz_hinge: is binary; .* 5 classes"),
    ({"loss.class_weights": (1.0,)}, r"config.loss.class_weights: has 1 entries"),
    ({"loss.aux_weight": float("nan")}, r"config.loss.aux_weight"),
  ],
)
def test_a_wrong_field_is_named(flat, message):
  with pytest.raises(ValueError, match=message):
    objective.from_config(_config(**flat), 5, 255)


def test_an_unknown_term_is_named_with_the_known_ones():
  config = _config()
  with config.unlocked():
    config.loss.terms = {"dise": 1.0}
  with pytest.raises(ValueError, match=r"unknown term\(s\) \['dise'\]; the terms are \['cross_"):
    objective.from_config(config, 5, 255)


def test_lovasz_hinge_takes_the_binary_foreground():
  built = objective.from_config(_config(**{"loss.terms.lovasz_hinge": 1.0}), 2, 255, foreground=0)
  assert dict((n, o) for n, _, o in built.terms)["lovasz_hinge"]["foreground"] == 0


def test_the_objective_describes_itself_in_one_line():
  config = _config(**{"loss.terms.dice": 0.5, "loss.dice.classes": (1,)})
  assert objective.from_config(config, 5, 255).describe() == (
    "1 cross_entropy + 0.5 dice(smooth=0.0, classes=(1,)) (auxiliary heads: 0.4 cross_entropy)"
  )
