"""Trains and evaluates a config: `python -m jaxseg.main --config=configs/psp.py`.

Flags:
  --config: a config file, optionally with an argument (`configs/psp.py:resnet50`);
    any field can be overridden (`--config.batch_size=8`); unknown fields fail.
  --workdir: where checkpoints, logs and metrics go; default `runs/<config>`.
    A run resumes from the latest checkpoint in its workdir.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxseg import config_files, train  # Importing jaxseg sets its XLA flags first.

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  spec = config_flags.get_config_filename(FLAGS["config"])
  workdir = FLAGS.workdir or config_files.default_workdir(spec)
  train.train_and_evaluate(FLAGS.config, workdir)


if __name__ == "__main__":
  app.run(main)
