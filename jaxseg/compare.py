"""Trains several configs with the same budget and prints their results side by side.

    python -m jaxseg.compare --configs=configs/fcn32s.py,configs/fcn16s.py,configs/fcn8s.py

Each config trains in `<workdir>/<name>` (resuming if it already has), with
`--steps`, `--batch_size` and `--eval_every_steps` overriding every config
alike when given; then a table lists per-class IoU and the summary metrics of
each run's final evaluation, `comparison.json` in the workdir records them and
`comparison.png` draws every run's training loss and validation mIoU.
"""

import json
import os

from absl import app, flags, logging

from jaxseg import config_files, metrics, train, visualize

FLAGS = flags.FLAGS


def format_comparison(names: list[str], results: list[dict]) -> str:
  """Rows: classes then mIoU, mAcc, aAcc; one column per run; in percent."""
  width = max(12, *(len(n) for n in names))
  classes = list(results[0]["iou"])
  label_width = max(len("aAcc"), *(len(c) for c in classes))
  header = " " * label_width + "".join(f"{n:>{width + 2}}" for n in names)
  lines = [header, "-" * len(header)]

  def row(label, values):
    cells = "".join(f"{'n/a' if v is None else f'{100 * v:.2f}':>{width + 2}}" for v in values)
    return f"{label:<{label_width}}{cells}"

  lines += [row(c, [r["iou"][c] for r in results]) for c in classes]
  lines.append("-" * len(header))
  lines += [row(k, [r[k.lower()] for r in results]) for k in ("mIoU", "mAcc", "aAcc")]
  return "\n".join(lines)


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  flags.DEFINE_list("configs", None, "Config files, each optionally `path:arg`.")
  flags.DEFINE_string("workdir", "runs/compare", "Parent directory of the runs.")
  flags.DEFINE_integer("steps", None, "Training steps for every config.")
  flags.DEFINE_integer("batch_size", None, "Global batch size for every config.")
  flags.DEFINE_integer(
    "eval_every_steps", None, "Evaluate every config this often (points of the mIoU curves)."
  )
  flags.mark_flags_as_required(["configs"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  names, results, curves = [], [], {}
  for spec in FLAGS.configs:
    config = config_files.load_config(spec)
    with config.unlocked():
      if FLAGS.steps:
        config.num_train_steps = FLAGS.steps
        config.eval_every_steps = min(config.eval_every_steps, FLAGS.steps)
      if FLAGS.batch_size:
        config.batch_size = FLAGS.batch_size
      if FLAGS.eval_every_steps:
        config.eval_every_steps = FLAGS.eval_every_steps
    name = os.path.basename(config_files.default_workdir(spec))
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
  app.run(main)
