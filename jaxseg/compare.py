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
(and a binary run's foreground F1, precision and recall), `comparison.json`
in the workdir records them and `comparison.png` draws every run's training
loss and validation mIoU.
"""

import json
import os

from absl import flags

from jaxseg import cli, config_files, errors, metrics, train, visualize

FLAGS = flags.FLAGS


def format_comparison(names: list[str], results: list[dict]) -> str:
  """Rows: classes then mIoU, mAcc, aAcc; one column per run; in percent."""
  width = max(12, *(len(n) for n in names))
  classes = list(results[0]["iou"])
  binary = all("foreground" in r for r in results)
  label_width = max(len("fg precision" if binary else "aAcc"), *(len(c) for c in classes))
  header = " " * label_width + "".join(f"{n:>{width + 2}}" for n in names)
  lines = [header, "-" * len(header)]

  def row(label, values):
    cells = "".join(f"{'n/a' if v is None else f'{100 * v:.2f}':>{width + 2}}" for v in values)
    return f"{label:<{label_width}}{cells}"

  lines += [row(c, [r["iou"][c] for r in results]) for c in classes]
  lines.append("-" * len(header))
  lines += [row(k, [r[k.lower()] for r in results]) for k in ("mIoU", "mAcc", "aAcc")]
  if binary:
    lines += [
      row(f"fg {k}", [r["foreground"][k] for r in results])
      for k in ("iou", "f1", "precision", "recall")
    ]
  return "\n".join(lines)


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
  names, results, curves = [], [], {}
  for name, config in runs:
    workdir = os.path.join(FLAGS.workdir, name)
    print(f"\n=== {name}: {config.num_train_steps} steps of {config.batch_size} ({workdir})")
    train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.json")) as f:
      results.append(json.load(f)["latest"])
    names.append(name)
    curves[name] = metrics.read_scalars(workdir)
  table = format_comparison(names, results)
  print("\nFinal validation results, IoU per class (%):\n" + table)
  with open(os.path.join(FLAGS.workdir, "comparison.json"), "w") as f:
    json.dump(dict(zip(names, results, strict=True)), f, indent=2)
  picture = os.path.join(FLAGS.workdir, "comparison.png")
  visualize.learning_curves(curves, picture)
  print(f"Learning curves: {picture}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
