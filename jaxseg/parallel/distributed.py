"""Joining the processes of a multi-host run, and stopping them together.

Every host runs the same command. `initialize` connects them through
`jax.distributed` when the launch says there are several: explicit arguments
(the `--coordinator_address/--num_processes/--process_id` flags of
`jaxseg.main`), the environment variables `JAX_COORDINATOR_ADDRESS`,
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, or a cluster JAX recognises (Cloud
TPU pods, SLURM, Open MPI, Kubernetes) fill in what is missing. A single
process on a laptop initialises nothing.

`StopRequest` turns SIGTERM (a preemption notice) or SIGINT (Ctrl-C) into a
request that the training loop honours at the next step boundary.
"""

import os
import signal
import threading
from types import FrameType

import jax
from absl import logging

_ENV = {
  "coordinator_address": "JAX_COORDINATOR_ADDRESS",
  "num_processes": "JAX_NUM_PROCESSES",
  "process_id": "JAX_PROCESS_ID",
}


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> bool:
  """Calls `jax.distributed.initialize` when this is one process of several.

  Must run before anything touches a JAX device. Returns whether it did.
  """
  given = {
    "coordinator_address": coordinator_address,
    "num_processes": num_processes,
    "process_id": process_id,
  }
  for key, variable in _ENV.items():
    if given[key] is None and os.environ.get(variable):
      value = os.environ[variable]
      given[key] = value if key == "coordinator_address" else int(value)
  explicit = any(v is not None for v in given.values())
  if explicit and given["num_processes"] == 1:
    return False
  # CPU processes exchange collectives through gloo; GPUs and TPUs ignore this.
  previous = jax.config.jax_cpu_collectives_implementation
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
  except ValueError:
    if explicit:
      raise
    # Nothing given and no cluster JAX recognises: JAX asks for a coordinator
    # address. This is a single process.
    jax.config.update("jax_cpu_collectives_implementation", previous)
    return False
  logging.info("Process %d of %d joined", jax.process_index(), jax.process_count())
  return True


class StopRequest:
  """Catches SIGTERM and SIGINT while active; `requested` says one came.

  The first signal only sets the flag: the run finishes its step, saves and
  exits cleanly. A second SIGINT interrupts at once (KeyboardInterrupt).
  Outside the main thread, where Python cannot install handlers, it does
  nothing.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signal_name is not None

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def install(self) -> None:
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def uninstall(self) -> None:
    """Puts back the handlers that were there before `install`."""
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}
