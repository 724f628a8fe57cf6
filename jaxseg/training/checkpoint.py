"""Checkpoints: the only module that imports Orbax.

A checkpoint holds the train state, each array saved in shards by the devices
(and hosts) that hold it. It restores onto any mesh: the target is an abstract
tree carrying the new shardings, and Orbax reshards on read. The data position
needs no saving: the input stream is a function of the step
(`jaxseg.data.pipeline`). Saves are asynchronous; Orbax writes into a
temporary directory and renames it when complete (process 0, after every host
has written), so a save interrupted even by `kill -9` is never restored. The
latest `keep` checkpoints are kept, plus the best by validation mIoU.
"""

import contextlib
import logging
import os
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from jaxseg import errors

BEST_METRIC = "miou"


class _QuietUntrackedSaves(logging.Filter):
  """Interval saves carry no metrics by design; Orbax warns about each one."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    # Reading one item of a step (`read_variables`) finds no step metadata there.
    if "did not provide metrics" in message or "_CHECKPOINT_METADATA" in message:
      return False
    # A failed save's traceback from each of Orbax's threads: `Checkpointer`
    # raises it once, as one line naming the step and its directory.
    failed_save = ("raised an exception", "Failed to run", "Save Finalize thread")
    return not (record.levelno >= logging.ERROR and any(s in message for s in failed_save))


logging.getLogger("absl").addFilter(_QuietUntrackedSaves())


class _QuietFailedWrites(logging.Filter):
  """Orbax's write tasks that failed with the save (a full disk) are also
  reported by asyncio as never retrieved (a Task's, or the _GatheringFuture
  of several, as timing has it); the save's one line says it."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("exception was never retrieved" in message and "orbax" in message)


logging.getLogger("asyncio").addFilter(_QuietFailedWrites())


def _drop_closed_loop_callbacks(hook):
  """A failed read of a damaged checkpoint leaves TensorStore callbacks that
  reach Orbax's closed event loop later, each printing a traceback that says
  nothing about the damage (named in one warning instead): drop only those."""

  def unraisable(info):
    error = info.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    hook(info)

  return unraisable


sys.unraisablehook = _drop_closed_loop_callbacks(sys.unraisablehook)


class Checkpointer:
  """Saves and restores the train state under `directory`."""

  def __init__(self, directory: str, *, keep: int, save_every_steps: int):
    policy = checkpoint_managers.AnyPreservationPolicy(
      [
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(
          get_metric_fn=lambda m: m[BEST_METRIC],
          n=1,
          keep_checkpoints_without_metrics=False,
        ),
      ]
    )
    options = ocp.CheckpointManagerOptions(
      save_interval_steps=save_every_steps,
      preservation_policy=policy,
      best_fn=lambda m: m[BEST_METRIC],
      best_mode="max",
      enable_async_checkpointing=True,
      create=True,
    )
    self._manager = ocp.CheckpointManager(directory, options=options)
    self._saving: int | None = None  # The step of the save in flight.
    self._failed = False

  @property
  def directory(self) -> str:
    return str(self._manager.directory)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def restore_newest(self, abstract_state: Any) -> tuple[Any, int] | None:
    """`(state, step)` of the newest checkpoint that reads completely, or None
    when there is none at all. A damaged one (a file truncated or missing: a
    full disk, a copy cut short) is named in one warning line and moved aside
    to `STEP.damaged`, never deleted; a later save may then reuse its step.

    Raises:
      DamagedCheckpoint when every checkpoint is damaged.
    """
    steps = sorted(self.all_steps(), reverse=True)
    for n, step in enumerate(steps):
      try:
        restored = self.restore(step, abstract_state)
      except Exception:  # Orbax and TensorStore raise many types.
        problem = damage(self.directory, step)
        if problem is None:
          raise  # It reads without this target: not damage (a mismatch, a bug).
        moved = _set_aside(self.directory, step)
        warn(f"checkpoint step {step} is damaged ({problem}); moved aside to {moved}")
        continue
      if n:
        self._manager.reload()  # Forget the steps set aside.
      return restored, step
    self._manager.reload()
    if steps:
      raise DamagedCheckpoint(
        f"no checkpoint in {self.directory} reads completely (steps {', '.join(map(str, steps))} "
        f"were damaged and moved aside to STEP{DAMAGED_SUFFIX}); start the run in another "
        "--workdir, or copy the checkpoints back if they can be repaired"
      )
    return None

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores step `step` into the shardings of `abstract_state`.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct`s with shardings (from
    `jax.eval_shape`), so a checkpoint restores onto any mesh.
    """
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    return self._manager.restore(step, args=args)["state"]

  def save(
    self, step: int, state: Any, *, metrics: dict[str, float] | None = None, force: bool = False
  ) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it did."""
    if not force and not self._manager.should_save(step):
      return False
    args = ocp.args.Composite(state=ocp.args.StandardSave(state))
    with self._failing_as_one_line():  # The previous save, finished in the background.
      self._manager.check_for_errors()
    self._saving = step
    with self._failing_as_one_line():
      return self._manager.save(step, args=args, metrics=metrics, force=force)

  def wait_until_finished(self) -> None:
    with self._failing_as_one_line():
      self._manager.wait_until_finished()
      self._manager.check_for_errors()

  def close(self) -> None:
    try:
      self._manager.close()
    except Exception:
      if not self._failed:  # Else already raised, as one line.
        raise

  @contextlib.contextmanager
  def _failing_as_one_line(self):
    """A failed write (no space, a size limit, no permission) as one
    `errors.WriteFailed` naming the step; the checkpoints before it are intact."""
    try:
      yield
    except Exception as e:  # Orbax and TensorStore raise many types.
      self._failed = True
      where = os.path.join(self.directory, str(self._saving)) if self._saving else self.directory
      raise errors.WriteFailed(
        f"could not write checkpoint step {self._saving} to {where}: {_describe(e)}; the "
        "checkpoints saved before it are intact (no space left, or a file-size limit?)"
      ) from e


def for_run(workdir: str, config) -> Checkpointer:
  """The checkpoints of the run in `workdir` (under `workdir/checkpoints`),
  kept and saved as `config` says."""
  return Checkpointer(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    keep=config.keep_checkpoints,
    save_every_steps=config.checkpoint_every_steps,
  )


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
  """`ShapeDtypeStruct`s of `tree` carrying `shardings`: a restore target."""
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
  )


def _step_directory(path: str) -> str:
  """The step directory `path` names: a run's workdir or its `checkpoints`
  directory (the latest step), or one step's directory."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(os.path.join(path, "state")):
    return path
  root = (
    os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
  )
  steps = _complete_steps(root)
  if not steps:
    raise errors.MissingInput(
      f"{path!r} is neither a jaxseg workdir, its checkpoints directory, nor one checkpoint "
      "(a directory with a 'state' subdirectory)"
    )
  return os.path.join(root, str(max(steps)))


def _complete_steps(root: str) -> list[int]:
  """The steps under a checkpoints directory that hold a complete `state`."""
  if not os.path.isdir(root):
    return []
  complete = lambda d: d.isdigit() and os.path.isdir(os.path.join(root, d, "state"))
  return sorted(int(d) for d in os.listdir(root) if complete(d))


def saved_steps(workdir: str) -> list[int]:
  """The complete checkpoints of the run in `workdir`, without opening a
  manager (which would create directories)."""
  return _complete_steps(os.path.join(os.path.abspath(workdir), "checkpoints"))


def stored_variable_shapes(workdir: str, step: int) -> dict[str, tuple[int, ...]]:
  """`{"params/.../kernel": shape}` (and `batch_stats/...`) of a saved step, from
  its metadata alone."""
  item = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state")
  tree = ocp.PyTreeCheckpointer().metadata(item).item_metadata.tree
  shapes = {}

  def walk(prefix, node):
    if isinstance(node, dict):
      for key, value in node.items():
        walk(f"{prefix}/{key}" if prefix else str(key), value)
    elif hasattr(node, "shape"):
      shapes[prefix] = tuple(node.shape)

  for key in ("params", "batch_stats"):
    if key in tree:
      walk(key, tree[key])
  return shapes


def read_variables(path: str) -> tuple[dict[str, Any], str]:
  """The model variables (`params` and `batch_stats`, as numpy arrays) of a
  checkpoint, without the optimizer state; any mesh, no target needed.

  Returns `(variables, step_directory)`.

  Raises:
    DamagedCheckpoint naming the step directory when it does not read.
  """
  directory = _step_directory(path)
  try:
    return _read(os.path.join(directory, "state"), ("params", "batch_stats")), directory
  except Exception as e:  # Orbax and TensorStore raise many types.
    raise DamagedCheckpoint(f"checkpoint {directory} is damaged ({_describe(e)})") from e


class DamagedCheckpoint(errors.InvalidInput):
  """A checkpoint's files do not read completely (truncated or missing)."""


DAMAGED_SUFFIX = ".damaged"


def damage(root: str, step: int) -> str | None:
  """What is wrong with the checkpoint of `step` under `root`, read whole
  without a target (every array of the state); None if it reads completely."""
  try:
    _read(os.path.join(root, str(step), "state"), None)
  except Exception as e:  # Orbax and TensorStore raise many types.
    return _describe(e)
  return None


def warn(message: str) -> None:
  """One `warning:` line on stderr from process 0."""
  if jax.process_index() == 0:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _read(item: str, keys: tuple[str, ...] | None) -> dict[str, Any]:
  """The arrays of a checkpoint item as numpy arrays: those under `keys`, or all."""
  reader = ocp.PyTreeCheckpointer()
  metadata = reader.metadata(item)
  if metadata is None or metadata.item_metadata is None or metadata.item_metadata.tree is None:
    raise errors.MissingInput(f"{item}: its metadata (_METADATA) does not read")
  tree = metadata.item_metadata.tree
  subset = {k: tree[k] for k in keys if k in tree} if keys else tree
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), subset)
  args = ocp.args.PyTreeRestore(item=subset, restore_args=restore_args, partial_restore=True)
  return reader.restore(item, args=args)


def _describe(error: BaseException) -> str:
  return errors.summary(error, limit=160)


def _set_aside(root: str, step: int) -> str:
  """Renames step `step`'s directory to `STEP.damaged` (process 0, all
  processes waiting for it); returns the new path."""
  source = os.path.join(root, str(step))
  target = source + DAMAGED_SUFFIX
  n = 1
  while os.path.exists(target):  # Damaged before, at the same step.
    n += 1
    target = f"{source}{DAMAGED_SUFFIX}.{n}"
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"jaxseg_set_aside_{step}_before")
  if jax.process_index() == 0:
    os.rename(source, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"jaxseg_set_aside_{step}_after")
  return target
