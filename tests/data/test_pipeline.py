import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxseg.data import get_dataset_spec, pipeline
from jaxseg.parallel import sharding
from tests.helpers import tiny_config


@pytest.fixture
def setup(data_dir):
  config = tiny_config(data_dir)
  spec, builder = pipeline.prepare(config)
  return config, spec, builder, sharding.make_mesh(config)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_train_batches_have_the_right_shapes_and_types(setup):
  config, spec, builder, mesh = setup
  batch = next(pipeline.train_iterator(config, spec, builder, mesh))
  assert batch["image"].shape == (8, 64, 64, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (8, 64, 64) and batch["label"].dtype == np.int32
  assert batch["label"].max() < spec.num_classes


def test_train_order_is_a_function_of_the_seed(setup):
  config, spec, builder, mesh = setup
  a = _take(pipeline.train_iterator(config, spec, builder, mesh), 7)
  b = _take(pipeline.train_iterator(config, spec, builder, mesh), 7)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x["image"], y["image"])
  config.seed = 1
  c = _take(pipeline.train_iterator(config, spec, builder, mesh), 1)
  assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_epochs_cover_the_split_and_reshuffle(setup):
  config, spec, builder, mesh = setup
  batches = _take(pipeline.train_iterator(config, spec, builder, mesh), 12)  # 2 epochs of 48.
  images = np.concatenate([b["image"] for b in batches]).reshape(96, -1)
  first, second = images[:48], images[48:]
  assert len({x.tobytes() for x in first}) == 48
  assert {x.tobytes() for x in first} == {x.tobytes() for x in second}
  assert not np.array_equal(first, second)


def test_iterator_started_at_a_step_continues_the_stream_exactly(setup, monkeypatch):
  config, spec, builder, mesh = setup
  it = pipeline.train_iterator(config, spec, builder, mesh)
  _take(it, 3)
  expected = _take(it, 2)
  resumed = pipeline.train_iterator(config, spec, builder, mesh, start_step=3)
  for x, y in zip(expected, _take(resumed, 2), strict=True):
    np.testing.assert_array_equal(x["label"], y["label"])
  # Resumed on two processes, each reads its half of the same global batches.
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  second_half = _take(pipeline.train_iterator(config, spec, builder, mesh, start_step=3), 2)
  for x, y in zip(expected, second_half, strict=True):
    np.testing.assert_array_equal(x["label"][4:], y["label"])


def test_processes_read_contiguous_slices_of_the_global_batch(setup, monkeypatch):
  config, spec, builder, mesh = setup
  whole = _take(pipeline.train_iterator(config, spec, builder, mesh), 2)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  parts = []
  for p in range(2):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    parts.append(_take(pipeline.train_iterator(config, spec, builder, mesh), 2))
  for t in range(2):
    assert parts[0][t]["image"].shape[0] == 4
    joined = np.concatenate([parts[0][t]["image"], parts[1][t]["image"]])
    np.testing.assert_array_equal(joined, whole[t]["image"])


def test_eval_batches_cover_every_example_once_with_padding_masked(setup):
  config, spec, builder, mesh = setup
  plan = pipeline.eval_plan(config, spec, builder, mesh)
  batches = list(pipeline.eval_batches(config, spec, builder, plan))
  assert len(batches) == 3  # 20 examples in batches of 8: 8 + 8 + 4 (+4 padding).
  masks = np.concatenate([b["mask"] for b in batches])
  assert masks.sum() == 20 and not masks[20:].any()
  padded_labels = batches[-1]["label"][4:]
  assert np.all(padded_labels == spec.ignore_label)
  source = tfds.builder("synthetic_shapes/tiny", data_dir=config.data.data_dir)
  source = source.as_data_source("validation")
  np.testing.assert_array_equal(batches[1]["image"][2], source[10]["image"])


def test_out_of_range_label_names_dataset_split_and_example():
  spec = get_dataset_spec("synthetic_shapes")
  check = pipeline._DecodeAndCheck(spec, "synthetic_shapes", "train", num_records=48)
  image = np.zeros((4, 4, 3), np.uint8)
  good = np.array([[0, 1, 255, 4]] * 4, np.uint8)[..., None]
  assert check(3, {"image": image, "segmentation_mask": good})["label"].dtype == np.int32
  bad = good.copy()
  bad[0, 0] = 7
  with pytest.raises(ValueError, match=r"'train' example 5: label values \[7\] are outside"):
    check(53, {"image": image, "segmentation_mask": bad})


def test_batch_size_not_divisible_by_devices_is_named(setup):
  config, spec, builder, _ = setup
  config.eval_batch_size = 6
  fake_mesh = type("Mesh", (), {"shape": {"data": 4}})()
  with pytest.raises(ValueError, match=r"config\.eval_batch_size=6 must be divisible by .* \(4\)"):
    pipeline.eval_plan(config, spec, builder, fake_mesh)


def test_image_label_size_mismatch_is_named():
  spec = get_dataset_spec("synthetic_shapes")
  check = pipeline._DecodeAndCheck(spec, "synthetic_shapes", "validation", num_records=20)
  with pytest.raises(ValueError, match="example 2: image size"):
    check(2, {"image": np.zeros((4, 4, 3), np.uint8), "segmentation_mask": np.zeros((4, 5, 1))})
