"""Trains and evaluates a config: `python -m jaxseg.main --config=configs/psp.py`.

Flags:
  --config: a config file, optionally with an argument (`configs/psp.py:resnet50`);
    any field can be overridden (`--config.batch_size=8`); unknown fields fail.
  --workdir: where checkpoints, logs and metrics go; default `runs/<config>`.
    A run resumes from the latest checkpoint in its workdir.
  --coordinator_address, --num_processes, --process_id: a multi-host launch
    (also read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
    found automatically on Cloud TPU pods, SLURM and Open MPI). Every host
    runs the same command.

SIGTERM or Ctrl-C finishes the current step, saves a checkpoint and exits 0.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxseg import config_files, distributed, train  # Importing jaxseg sets its XLA flags.

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, multi-host.")
flags.DEFINE_integer("num_processes", None, "Number of processes, multi-host.")
flags.DEFINE_integer("process_id", None, "This process's index, multi-host.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  spec = config_flags.get_config_filename(FLAGS["config"])
  workdir = FLAGS.workdir or config_files.default_workdir(spec)
  train.train_and_evaluate(FLAGS.config, workdir)


if __name__ == "__main__":
  app.run(main)
