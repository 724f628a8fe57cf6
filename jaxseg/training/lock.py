"""One process at a time per workdir: `hold(workdir, what)`.

Two trainings (or a training and an evaluate) writing one workdir would
interleave checkpoints and metrics. The holder keeps an exclusive `flock` on
`WORKDIR/.jaxseg.lock`, whose text names it; the kernel drops the lock when the
holder exits, however it exits (kill -9 included), so a stale lock never blocks
the next start. Only process 0 of a multi-host run takes it, and tells the
others whether it could, so that all of them stop at once.
"""

import fcntl
import os
import socket
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxseg import errors

LOCK_FILE = ".jaxseg.lock"


class WorkdirBusy(errors.InvalidInput):
  """Another live process holds the workdir."""


class Held:
  """A held workdir lock; `release()` (idempotent) lets the next one in."""

  def __init__(self, file=None):
    self._file = file

  def release(self) -> None:
    if self._file is not None:
      self._file.truncate(0)  # An idle workdir's lock file is empty.
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None

  def __enter__(self) -> "Held":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def hold(workdir: str, what: str, *, create: bool = True) -> Held:
  """Takes `workdir` for this process, or raises WorkdirBusy naming the live
  process that holds it. `what` ("training", "evaluate") is what the next one
  to try is told. A missing workdir is created, or with `create=False` left
  for the caller to report (nothing is held). In a multi-host run every
  process raises if process 0 is refused (they would otherwise wait for it at
  the run's first collective)."""
  held, refusal = Held(), None
  if jax.process_index() == 0 and (create or os.path.isdir(workdir)):
    try:
      held = _take(workdir, what)
    except WorkdirBusy as e:
      refusal = e
  if jax.process_count() > 1:
    busy = int(multihost_utils.broadcast_one_to_all(np.int32(refusal is not None)))
    if busy and refusal is None:
      raise WorkdirBusy(
        f"--workdir={workdir} is in use by another process (process 0 was refused; its "
        "error names the holder)"
      )
  if refusal is not None:
    raise refusal
  return held


def _take(workdir: str, what: str) -> Held:
  os.makedirs(workdir, exist_ok=True)
  f = open(os.path.join(workdir, LOCK_FILE), "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise WorkdirBusy(
      f"--workdir={workdir} is in use by {holder}: wait for it to end, or use another --workdir"
    ) from None
  f.seek(0)
  f.truncate(0)
  command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
  command = command if len(command) <= 160 else command[:157] + "..."
  f.write(
    f"process {os.getpid()} on {socket.gethostname()} ({what}, since "
    f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {command})\n"
  )
  f.flush()
  return Held(f)
