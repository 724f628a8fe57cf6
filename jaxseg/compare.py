"""Trains several configs with the same budget and prints their results side by side.

    python -m jaxseg.compare --config=configs/fcn32s.py --config=configs/fcn16s.py \\
        --config=configs/fcn8s.py [--config.num_train_steps=2000 ...]
    python -m jaxseg.compare --config=configs/unet.py --variant=cross_entropy \\
        --variant="dice: --config.loss.terms.dice=1.0"

Each config trains in `<workdir>/<name>` (resuming if it already has), with
the command line's `--config.KEY=VALUE` overrides applied to every config
alike. `--variant="NAME: --config.KEY=VALUE ..."` (repeatable) trains every
config once per variant, with the variant's own overrides on top, in
`<workdir>/<name>` (one config) or `<workdir>/<config>-<name>`. Then a table
lists per-class IoU and the summary metrics of each run's final evaluation
(mIoU, Boundary IoU, the trimap's mIoU within 1..32 px of an edge, and a
binary run's foreground F1, precision and recall), `comparison.json` in the
workdir records them, `comparison.png` draws every run's training loss and
validation mIoU and `trimap.png` their scores against the distance from an edge.
"""

import os

from absl import flags

from jaxseg import cli, config_files, errors
from jaxseg.training import comparison

FLAGS = flags.FLAGS


def parse_variant(text: str) -> tuple[str, list[str]]:
  """`"NAME: --config.KEY=VALUE ..."` -> `(NAME, overrides)`; a bare NAME has none."""
  name, _, rest = text.partition(":")
  name, overrides = name.strip(), rest.split()
  if (
    not name
    or any(c in name for c in "/\\ ")
    or any(not o.startswith("--config.") for o in overrides)
  ):
    raise errors.InvalidInput(
      f"--variant={text!r}: expected 'NAME: --config.KEY=VALUE ...' (NAME without / or spaces)"
    )
  return name, overrides


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_config_flag(multi=True)
  flags.DEFINE_string("workdir", "runs/compare", "Parent directory of the runs.")
  flags.DEFINE_multi_string(
    "variant",
    [],
    "'NAME: --config.KEY=VALUE ...': train each config once more with these overrides.",
  )


def main(argv):
  del argv
  cli.quiet_logging()
  variants = [parse_variant(v) for v in FLAGS.variant] or [("", [])]
  configs = cli.load_configs()
  runs = []
  for spec, config in configs:
    base = os.path.basename(config_files.default_workdir(spec))
    for variant, overrides in variants:
      try:
        variant_config = cli.apply_overrides(config.copy_and_resolve_references(), overrides)
      except ValueError as e:
        raise errors.InvalidInput(f"--variant={variant}: {e}") from None
      name = variant if len(configs) == 1 and variant else "-".join(filter(None, (base, variant)))
      runs.append((name, variant_config))
  comparison.compare(runs, FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
