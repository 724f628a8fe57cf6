import jax
import numpy as np
import pytest

from jaxseg.scoring import metrics, tables, writers


def test_metrics_of_hand_built_confusion_matrix():
  m = metrics.compute_metrics(np.array([[3, 1], [2, 4]]))
  np.testing.assert_allclose(m["iou"], [3 / 6, 4 / 7])
  np.testing.assert_allclose(m["acc"], [3 / 4, 4 / 6])
  np.testing.assert_allclose(m["dice"], [6 / 9, 8 / 11])
  assert m["miou"] == pytest.approx((3 / 6 + 4 / 7) / 2)
  assert m["macc"] == pytest.approx((3 / 4 + 4 / 6) / 2)
  assert m["aacc"] == pytest.approx(7 / 10)


def test_class_absent_everywhere_is_left_out_of_the_means():
  confusion = np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]])
  m = metrics.compute_metrics(confusion)
  assert np.isnan(m["iou"][2]) and np.isnan(m["acc"][2])
  assert m["miou"] == pytest.approx((5 / 6 + 4 / 5) / 2)


def test_predicted_but_absent_class_has_zero_iou():
  # Class 1 never appears in the ground truth but is predicted once.
  m = metrics.compute_metrics(np.array([[3, 1], [0, 0]]))
  assert m["iou"][1] == 0.0 and np.isnan(m["acc"][1])
  assert m["miou"] == pytest.approx((3 / 4 + 0) / 2)


def test_confusion_matrix_equals_numpy_with_ignored_pixels():
  rng = np.random.default_rng(0)
  c = 5
  labels = rng.integers(0, c, size=(4, 16, 16))
  labels[rng.uniform(size=labels.shape) < 0.2] = 255
  preds = rng.integers(0, c, size=labels.shape)
  valid = labels != 255
  fn = jax.jit(metrics.confusion_matrix, static_argnums=2)
  got = np.asarray(fn(labels, preds, c, valid))
  expected = np.zeros((c, c), np.int64)
  np.add.at(expected, (labels[valid], preds[valid]), 1)
  np.testing.assert_array_equal(got, expected)


def test_table_names_every_class():
  m = metrics.compute_metrics(np.array([[3, 1], [2, 4]]))
  table = tables.format_table(m, ["background", "cat"])
  assert "background" in table and "cat" in table and "mIoU 53.57" in table


def test_metrics_file_keeps_best(tmp_path):
  path = str(tmp_path / "metrics.json")
  names = ["a", "b"]
  good = writers.to_json(metrics.compute_metrics(np.array([[3, 0], [0, 3]])), names, 10)
  worse = writers.to_json(metrics.compute_metrics(np.array([[3, 1], [2, 4]])), names, 20)
  writers.update_metrics_file(path, good)
  contents = writers.update_metrics_file(path, worse)
  assert contents["latest"]["step"] == 20 and contents["best"]["step"] == 10
  assert contents["best"]["iou"] == {"a": 1.0, "b": 1.0}
