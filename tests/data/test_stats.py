import numpy as np

from jaxseg.data import stats


def test_counts_sizes_and_median_frequency_weights_by_hand():
  a = np.array([[0, 0, 1], [0, 255, 1]])  # 6 pixels: class 0 x3, class 1 x2.
  b = np.array([[2, 2], [0, 2]])  # 4 pixels: class 0 x1, class 2 x3.
  s = stats.class_statistics([a, b], num_classes=4, ignore_label=255)
  np.testing.assert_array_equal(s["pixels"], [4, 2, 3, 0])
  np.testing.assert_array_equal(s["image_pixels"], [10, 6, 4, 0])
  np.testing.assert_array_equal(s["images_with"], [2, 1, 1, 0])
  assert s["ignored"] == 1 and s["images"] == 2 and s["sizes"] == {(2, 3): 1, (2, 2): 1}
  # f = [0.4, 1/3, 0.75]; median 0.4.
  weights = stats.median_frequency_weights(s["pixels"], s["image_pixels"])
  np.testing.assert_allclose(weights, [1.0, 1.2, 0.4 / 0.75, 0.0])
  report = stats.format_report(s, ["a", "b", "c", "d"], weights)
  assert "class_weights='(1, 1.2, 0.5333, 0," in report
