"""What the command lines share: `--config.KEY=VALUE`, sizes, logging."""

import pytest
from absl import flags, logging

from configs import default
from jaxseg import cli
from tests.helpers import ROOT, run_command


def test_overrides_are_parsed_with_the_types_of_the_fields():
  config = default.get_config()
  config.lock()
  cli.apply_overrides(
    config,
    [
      "--config.crop_size=(96,80)",
      "--config.model.output_stride=16",
      "--config.dtype=bfloat16",
      "--config.loss.class_weights=(1.,2.)",
      "--config.mesh.fsdp=True",
      "--config.learning_rate=1",
    ],
  )
  assert config.crop_size == (96, 80) and config.model.output_stride == 16
  assert config.dtype == "bfloat16" and config.loss.class_weights == (1.0, 2.0)
  assert config.mesh.fsdp is True
  assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)


@pytest.mark.parametrize(
  "override,message",
  [
    ("--config.does_not_exist=1", "the config has no field 'does_not_exist'"),
    ("--config.model.nope=1", "has no field"),
    ("--config.model.output_stride=abc", "invalid literal for int"),
    # ml_collections' suggestion, unquoted (it reached the user as '\\\'eval...').
    (
      "--config.eval_every=40",
      r"no field 'eval_every' \(Did you mean \"eval_every_steps\" instead of \"eval_every\"\?\)$",
    ),
  ],
)
def test_bad_overrides_are_named(override, message):
  with pytest.raises(ValueError, match=message):
    cli.apply_overrides(default.get_config(), [override])


def test_overrides_are_kept_aside_for_every_config():
  rest = cli.parse_flags(["prog", "--config.batch_size=4", "--noconfig.mesh.fsdp", "extra"])
  try:
    assert rest == ["prog", "extra"]
    configs = cli.load_configs([f"{ROOT}/configs/psp.py", f"{ROOT}/configs/unet.py"])
    for _, config in configs:
      assert config.batch_size == 4 and config.mesh.fsdp is False
    assert configs[1][1].model.name == "unet"
  finally:
    cli._overrides.clear()
    flags.FLAGS.unparse_flags()


def test_sizes_parse_as_height_width():
  parser = cli.SizeParser()
  assert parser.parse("512,256") == (512, 256)
  assert parser.parse("64") == (64, 64)
  assert parser.parse(["32", "48"]) == (32, 48)
  for bad in ("0,4", "a,b", "1,2,3", "-4,4"):
    with pytest.raises(ValueError, match="is not a size"):
      parser.parse(bad)


def test_logging_is_quiet_unless_verbosity_is_given():
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["prog"])
  cli.quiet_logging()
  assert logging.get_verbosity() == logging.WARNING
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["prog", "--verbosity=1"])
  cli.quiet_logging()
  assert logging.get_verbosity() == 1
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["prog"])
  logging.set_verbosity(logging.WARNING)


def test_a_mistyped_override_stops_a_command_before_any_work():
  out = run_command(
    "jaxseg.benchmark", "--config=configs/psp.py", "--config.model.output_strid=8", "--steps=1"
  )
  assert out.returncode != 0
  assert "--config.model.output_strid=8: the config has no field" in out.stderr
  assert "Traceback" not in out.stderr and "Benchmarking" not in out.stdout
