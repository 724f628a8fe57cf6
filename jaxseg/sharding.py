"""The device mesh and how arrays are laid out on it.

One mesh axis, `data`, over every device of every process: parameters and
optimizer state are replicated, batches are split along their first dimension.
The mesh shape lives in `config.mesh` so that more axes (FSDP) can be added.
"""

from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """A mesh with axis `data` of size `config.mesh.data` (-1: all devices)."""
  num_devices = jax.device_count()
  size = config.mesh.data
  if size == -1:
    size = num_devices
  if size != num_devices:
    raise ValueError(
      f"config.mesh.data={config.mesh.data} must be -1 or the number of devices ({num_devices})"
    )
  return jax.make_mesh((size,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over `data`; the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def per_process_batch_size(global_batch_size: int, mesh: Mesh, key: str) -> int:
  """This process's share of a global batch; raises naming the config `key`."""
  devices = mesh.shape[DATA_AXIS]
  if global_batch_size % devices:
    raise ValueError(
      f"{key}={global_batch_size} must be divisible by the number of devices ({devices})"
    )
  return global_batch_size // jax.process_count()


def to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's host batch into one global array per key."""
  sharding = batch_sharding(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }
