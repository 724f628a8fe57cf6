"""The mesh and the layouts on it: FSDP splits, batch checks, global batches."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxseg.parallel import sharding
from tests.helpers import tiny_config


def test_fsdp_splits_the_largest_divisible_dimension_of_large_arrays():
  assert sharding.fsdp_spec((3, 3, 64, 128), 8, 1024) == PartitionSpec(None, None, None, "data")
  # 100 is not divisible by 8: the next largest dimension is split.
  assert sharding.fsdp_spec((100, 64), 8, 1024) == PartitionSpec(None, "data")
  assert sharding.fsdp_spec((128,), 8, 1024) == PartitionSpec()  # Small: replicated.
  assert sharding.fsdp_spec((3, 5, 7, 9, 11), 8, 10) == PartitionSpec()  # Nothing divides.
  assert sharding.fsdp_spec((1024, 1024), 1, 1) == PartitionSpec()


def test_mesh_size_other_than_the_devices_is_named(data_dir):
  config = tiny_config(data_dir, **{"mesh.data": 3})
  with pytest.raises(ValueError, match=r"config\.mesh\.data=3 must be -1 or the number"):
    sharding.make_mesh(config)


def test_state_is_replicated_without_fsdp_and_bytes_are_counted(data_dir):
  config = tiny_config(data_dir)
  mesh = sharding.make_mesh(config)
  tree = {"w": jax.ShapeDtypeStruct((4, 8), np.float32), "b": jax.ShapeDtypeStruct((8,), np.int8)}
  shardings = sharding.state_shardings(tree, mesh, config)
  assert all(s == sharding.replicated(mesh) for s in jax.tree.leaves(shardings))
  assert sharding.bytes_per_device(tree, shardings) == 4 * 8 * 4 + 8


def test_host_batch_becomes_one_global_array(data_dir):
  mesh = sharding.make_mesh(tiny_config(data_dir))
  batch = {"image": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "size": np.ones((2, 2))}
  global_batch = sharding.to_global(batch, mesh)
  assert global_batch["image"].sharding == sharding.batch_sharding(mesh)
  np.testing.assert_array_equal(np.asarray(global_batch["image"]), batch["image"])


def test_eval_batch_that_does_not_split_over_the_devices_is_named(data_dir):
  mesh = sharding.make_mesh(tiny_config(data_dir))
  assert sharding.per_process_batch_size(6, mesh, "config.eval_batch_size") == 6


def test_batch_that_does_not_split_into_micro_batches_is_refused(data_dir):
  config = tiny_config(data_dir, grad_accum_steps=3)
  with pytest.raises(ValueError, match=r"config\.batch_size=8 .*config\.grad_accum_steps \(3\)"):
    sharding.check_batch_layout(config, sharding.make_mesh(config))
  config = tiny_config(data_dir, grad_accum_steps=0)
  with pytest.raises(ValueError, match=r"config\.grad_accum_steps=0 must be a positive integer"):
    sharding.check_batch_layout(config, sharding.make_mesh(config))
