import numpy as np

from jaxseg import visualize
from jaxseg.data import labels


def test_grid_rows_hold_image_truth_prediction_cut_to_their_size():
  palette = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
  images = np.zeros((2, 6, 8, 3), np.uint8)
  images[0] = 100
  truths = np.ones((2, 6, 8), np.int32)
  truths[1, 0, 0] = labels.IGNORE_LABEL
  predictions = np.zeros((2, 6, 8), np.int32)
  grid = visualize.prediction_grid(images, truths, predictions, palette, sizes=[(6, 8), (4, 5)])
  s = visualize.SEPARATOR
  assert grid.shape == (s + 2 * (6 + s), s + 3 * (8 + s), 3)
  np.testing.assert_array_equal(grid[s : s + 6, s : s + 8], 100)  # Image 0.
  np.testing.assert_array_equal(grid[s, 2 * s + 8], [255, 0, 0])  # Truth 0: class 1.
  np.testing.assert_array_equal(grid[s, 3 * s + 16], [0, 0, 0])  # Prediction 0: class 0.
  row1 = 2 * s + 6
  np.testing.assert_array_equal(grid[row1, 2 * s + 8], labels.IGNORE_COLOUR)  # Ignored.
  np.testing.assert_array_equal(grid[row1 + 4, 2 * s + 8], 255)  # Padding cut: background.
  np.testing.assert_array_equal(grid[row1, 2 * s + 8 + 5], 255)
