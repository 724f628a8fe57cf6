import numpy as np

from jaxseg.data import labels
from jaxseg.scoring import pictures


def test_grid_rows_hold_image_truth_prediction_cut_to_their_size():
  palette = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
  images = np.zeros((2, 6, 8, 3), np.uint8)
  images[0] = 100
  truths = np.ones((2, 6, 8), np.int32)
  truths[1, 0, 0] = labels.IGNORE_LABEL
  predictions = np.zeros((2, 6, 8), np.int32)
  grid = pictures.prediction_grid(images, truths, predictions, palette, sizes=[(6, 8), (4, 5)])
  s = pictures.SEPARATOR
  assert grid.shape == (s + 2 * (6 + s), s + 3 * (8 + s), 3)
  np.testing.assert_array_equal(grid[s : s + 6, s : s + 8], 100)  # Image 0.
  np.testing.assert_array_equal(grid[s, 2 * s + 8], [255, 0, 0])  # Truth 0: class 1.
  np.testing.assert_array_equal(grid[s, 3 * s + 16], [0, 0, 0])  # Prediction 0: class 0.
  row1 = 2 * s + 6
  np.testing.assert_array_equal(grid[row1, 2 * s + 8], labels.IGNORE_COLOUR)  # Ignored.
  np.testing.assert_array_equal(grid[row1 + 4, 2 * s + 8], 255)  # Padding cut: background.
  np.testing.assert_array_equal(grid[row1, 2 * s + 8 + 5], 255)


def test_learning_curves_draws_each_run_and_keeps_a_resumed_runs_later_records(tmp_path):
  from matplotlib.image import imread

  records = [{"step": s, "train/loss": 1.0 / s} for s in range(10, 110, 10)]
  records += [{"step": 50, "eval/miou": 0.2}, {"step": 100, "eval/miou": 0.6}]
  records.append({"step": 100, "eval/miou": 0.7})  # Re-evaluated after a resume.
  assert pictures._by_step(records, "eval/miou") == [(50, 0.2), (100, 0.7)]
  path = str(tmp_path / "curves.png")
  pictures.learning_curves({"a": records, "b": records[:3]}, path)
  picture = imread(path)
  assert picture.shape[:2] == (400, 1100)
  assert picture[..., :3].std() > 0.05  # Not a blank canvas.
