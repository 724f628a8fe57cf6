"""What jaxseg's command lines share: configs with `--config.KEY=VALUE`
overrides, the flags naming a run, sizes, logging, start-up.

Every command line that takes a config takes it as `jaxseg.main` does:
`--config=configs/psp.py[:arg]` and any field as `--config.KEY=VALUE`, parsed
and type-checked by ml_collections (a mistyped key or a value of the wrong
type fails before any work). Those that take several configs (benchmark,
compare) repeat `--config=` and apply the same overrides to each.
"""

import ast
import functools
import os
import re
import sys
from collections.abc import Callable, Sequence

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

import jaxseg
from jaxseg import config_checks, config_files, errors

FLAGS = flags.FLAGS
_OVERRIDE = re.compile(r"^--?(no)?config\.")
# `--config.KEY=VALUE` arguments of the command line, set by `parse_flags`.
_overrides: list[str] = []


def run(main: Callable[[list[str]], None]) -> None:
  """Starts a command line: jaxseg's XLA flags, then absl with `parse_flags`.

  An `errors.UserError` ends it with one line, `error: <message>`, and exit
  status 2 (`JAXSEG_TRACEBACK=1` shows the traceback as well); Ctrl-C with
  `interrupted` and status 130; any other exception is a bug and keeps its
  traceback.
  """
  jaxseg.set_xla_flags()
  app.run(functools.partial(report_user_errors, main), flags_parser=parse_flags)


def report_user_errors(main: Callable[[list[str]], None], argv: list[str]) -> None:
  """Runs `main(argv)`; an `errors.UserError` becomes one `error:` line on
  stderr and exit status 2."""
  try:
    main(argv)
  except errors.UserError as e:
    if os.environ.get("JAXSEG_TRACEBACK"):
      raise
    # A progress bar the error interrupted leaves its line open: start a clean one.
    clear = "\r\033[K" if sys.stderr.isatty() else ""
    print(f"{clear}error: {e}", file=sys.stderr)
    sys.exit(2)
  except OSError as e:  # A full disk or no permission, wherever it was met.
    if e.errno not in errors.WRITE_ERRNOS or os.environ.get("JAXSEG_TRACEBACK"):
      raise
    print(f"error: {errors.write_failed(e.filename or 'a file', e)}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:  # Ctrl-C, or SIGTERM where a command turns it into one.
    if os.environ.get("JAXSEG_TRACEBACK"):
      raise
    print("\ninterrupted", file=sys.stderr)
    sys.exit(130)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with `--config.KEY=VALUE` kept aside for
  `load_configs` (absl would reject them: they are not flags of their own)."""
  _overrides[:] = [a for a in argv[1:] if _OVERRIDE.match(a)]
  return FLAGS([a for a in argv if a not in _overrides])


def define_config_flag(*, multi: bool = False, default: str | None = None) -> None:
  """`--config=FILE[:arg]` (required unless `default`), repeatable with
  `multi`; the command line's `--config.KEY=VALUE` overrides apply to each."""
  help_text = "Config file, optionally `path:arg`; fields as --config.KEY=VALUE."
  if multi:
    flags.DEFINE_multi_string("config", default, help_text + " Repeat for several.")
  else:
    flags.DEFINE_string("config", default, help_text)
  if default is None:
    flags.mark_flag_as_required("config")


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
  """`config` with `--config.KEY=VALUE` arguments applied by ml_collections'
  own parser (the types of the fields; unknown keys raise naming them)."""
  if not overrides:
    return config
  argv = ["jaxseg", *overrides]
  flag_values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict(
      "config", config, flag_values=flag_values, lock_config=True, sys_argv=argv
    )
    flag_values(argv)
  except (AttributeError, KeyError) as e:
    # ml_collections' message: the key quoted, then maybe a "Did you mean" line,
    # all of it quoted again by each exception that passed it on.
    text = str(e.args[0] if e.args else e)
    for _ in range(3):
      try:
        unquoted = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        break
      if not isinstance(unquoted, str):
        break
      text = unquoted
    key, _, hint = text.partition("\n")
    key = key.strip("'\"")
    hint = f" ({hint.strip()})" if hint.strip() else ""
    raise errors.InvalidInput(
      f"{_named(overrides, key)}: the config has no field {key!r}{hint}"
    ) from None
  except flags.Error as e:
    raise errors.InvalidInput(str(e)) from None
  return flag_values.config


def _named(overrides: Sequence[str], key: str) -> str:
  return next((o for o in overrides if f".{key}" in o.split("=")[0]), " ".join(overrides))


def load_configs(specs: Sequence[str] | None = None) -> list[tuple[str, ml_collections.ConfigDict]]:
  """`(spec, config)` for each `--config` (or `specs`), with this command
  line's `--config.KEY=VALUE` overrides applied to every one, their numbers
  checked (`config_checks`)."""
  specs = FLAGS.config if specs is None else specs
  if isinstance(specs, str):
    specs = [specs]
  try:
    configs = [
      (spec, apply_overrides(config_files.load_config(spec), _overrides)) for spec in specs
    ]
  except ValueError as e:  # A mistyped key or value: one `error:` line (`run`).
    raise errors.InvalidInput(str(e)) from None
  for _, config in configs:
    config_checks.check_numbers(config)
  return configs


def define_run_flags(*, required: bool = True) -> None:
  """`--workdir` (a training run; required unless not `required`) and `--checkpoint`."""
  flags.DEFINE_string("workdir", None, "Training run (holds config.json and checkpoints/).")
  flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
  if required:
    flags.mark_flag_as_required("workdir")


class SizeParser(flags.ArgumentParser):
  """ "H,W" (or one number for a square) -> `(H, W)`, positive integers."""

  def parse(self, argument):
    if isinstance(argument, tuple | list):
      argument = ",".join(map(str, argument))
    parts = [p.strip() for p in str(argument).split(",")]
    if len(parts) == 1:
      parts *= 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise errors.InvalidInput(f"{argument!r} is not a size 'H,W' of two positive integers")
    return int(parts[0]), int(parts[1])

  def flag_type(self) -> str:
    return "size H,W"


def define_size(name: str, default: str | None, help_text: str) -> None:
  """A flag holding `(H, W)`, given as `--name=H,W`."""
  flags.DEFINE(SizeParser(), name, default, help_text, serializer=flags.ListSerializer(","))


def define_test_time_flags(crop_size: str | None) -> None:
  """Whole-image or sliding-window inference and test-time augmentation."""
  flags.DEFINE_enum("mode", "whole", ["whole", "slide"], "Whole images or a sliding window.")
  define_size("crop_size", crop_size, "Slide tile H,W.")
  define_size("stride", None, "Slide stride H,W; default two thirds of the tile.")
  flags.DEFINE_list("scales", ["1.0"], "Test-time resize ratios, averaged.")
  flags.DEFINE_bool("flip", False, "Also average horizontally flipped passes.")


def quiet_logging() -> None:
  """Warnings and errors only, unless the command line sets `--verbosity`
  (absl's flag; `-v=1` shows jaxseg's info messages)."""
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
