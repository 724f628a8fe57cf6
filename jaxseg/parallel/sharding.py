"""The device mesh and how arrays are laid out on it.

One mesh axis, `data`, over every device of every process; batches are split
along their first dimension. Parameters and optimizer state are replicated, or
with `config.mesh.fsdp` sharded over the same axis (fully sharded data
parallel: each device keeps 1/N of every large array and XLA gathers them for
the step), which divides their memory per device by the number of devices.
"""

import math
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxseg import errors

DATA_AXIS = "data"


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """A mesh with axis `data` of size `config.mesh.data` (-1: all devices)."""
  num_devices = jax.device_count()
  size = config.mesh.data
  if size == -1:
    size = num_devices
  if size != num_devices:
    raise errors.InvalidInput(
      f"config.mesh.data={config.mesh.data} must be -1 or the number of devices ({num_devices})"
    )
  return jax.make_mesh((size,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over `data`; the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def fsdp_spec(shape: tuple[int, ...], num_shards: int, min_size: int) -> PartitionSpec:
  """Where FSDP splits an array of `shape`: its largest dimension that
  `num_shards` divides, if the array has at least `min_size` elements; else
  nowhere (small arrays such as biases and norms stay replicated)."""
  if num_shards == 1 or math.prod(shape) < min_size:
    return PartitionSpec()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % num_shards == 0:
      return PartitionSpec(*([None] * dim + [DATA_AXIS]))
  return PartitionSpec()


def state_shardings(abstract_state: Any, mesh: Mesh, config: ml_collections.ConfigDict) -> Any:
  """A sharding for every leaf of `abstract_state` (a tree of shapes):
  replicated, or split by `fsdp_spec` when `config.mesh.fsdp` is set."""
  if not config.mesh.fsdp:
    return jax.tree.map(lambda _: replicated(mesh), abstract_state)
  size = mesh.shape[DATA_AXIS]
  return jax.tree.map(
    lambda x: NamedSharding(mesh, fsdp_spec(x.shape, size, config.mesh.fsdp_min_size)),
    abstract_state,
  )


def bytes_per_device(tree: Any, shardings: Any) -> int:
  """The bytes of `tree` (arrays or shapes) that one device holds under
  `shardings` (a matching tree; every device holds an equal shard)."""

  def leaf_bytes(x, s):
    return math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize

  return sum(jax.tree.leaves(jax.tree.map(leaf_bytes, tree, shardings)))


def per_process_batch_size(global_batch_size: int, mesh: Mesh, key: str) -> int:
  """This process's share of a global batch; raises naming the config `key`."""
  devices = mesh.shape[DATA_AXIS]
  if global_batch_size % devices:
    raise errors.InvalidInput(
      f"{key}={global_batch_size} must be divisible by the number of devices ({devices})"
    )
  return global_batch_size // jax.process_count()


def to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's host batch into one global array per key."""
  sharding = batch_sharding(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }


def check_batch_layout(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """Fails, naming the config keys, unless each micro-batch splits evenly over
  the devices and processes."""
  accum, devices = config.grad_accum_steps, mesh.shape[DATA_AXIS]
  if not isinstance(accum, int) or accum < 1:
    raise errors.InvalidInput(f"config.grad_accum_steps={accum!r} must be a positive integer")
  if config.batch_size % (accum * devices):
    raise errors.InvalidInput(
      f"config.batch_size={config.batch_size} must be divisible by config.grad_accum_steps "
      f"({accum}) times the number of devices ({devices})"
    )
  per_process_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
