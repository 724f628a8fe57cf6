"""A config's numbers are checked before anything is built, naming the key."""

import pytest

from configs import default
from jaxseg import config_checks, errors


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("crop_size", (-8, 64), r"config.crop_size=\(-8, 64\) must be \(height, width\)"),
    ("crop_size", (64,), r"config.crop_size=\(64,\)"),
    (
      "evaluation.crop_size",
      (0, 5),
      r"config.evaluation.crop_size=\(0, 5\).*or \(\) for the default",
    ),
    ("evaluation.mode", "tiles", r"config.evaluation.mode='tiles' must be 'whole' or 'slide'"),
    ("data.channels", 0, r"config.data.channels=0 must be a whole number >= 1"),
    ("evaluation.batch_pixels", 0, r"config.evaluation.batch_pixels=0 must be a whole number >= 1"),
    ("batch_size", 0, r"config.batch_size=0 must be a whole number >= 1"),
    ("num_train_steps", -5, r"config.num_train_steps=-5"),
    ("learning_rate", float("inf"), r"config.learning_rate=inf must be a number >= 0"),
    ("momentum", 1.5, r"config.momentum=1.5 must be a number >= 0 and <= 1"),
    ("augment.cat_max_ratio", 0.0, r"config.augment.cat_max_ratio=0.0 must be a number > 0"),
    ("augment.scale_range", (2.0, 0.5), r"config.augment.scale_range=\(2.0, 0.5\)"),
    ("lr_power", 0.0, r"config.lr_power=0.0 must be a number > 0"),
  ],
)
def test_a_number_out_of_range_is_named(key, value, message):
  config = default.get_config()
  config.update_from_flattened_dict({key: value})
  with pytest.raises(errors.InvalidInput, match=message):
    config_checks.check_numbers(config)


def test_the_default_config_passes():
  config_checks.check_numbers(default.get_config())
