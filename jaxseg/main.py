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

from absl import app, flags

from jaxseg import cli, config_files
from jaxseg.parallel import distributed
from jaxseg.training import loop

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_config_flag()
  flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0, multi-host.")
  flags.DEFINE_integer("num_processes", None, "Number of processes, multi-host.")
  flags.DEFINE_integer("process_id", None, "This process's index, multi-host.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_logging()
  [(spec, config)] = cli.load_configs()
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  loop.train_and_evaluate(config, FLAGS.workdir or config_files.default_workdir(spec))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
