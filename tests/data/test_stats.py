import json
import os
import shutil
import subprocess
import sys

import numpy as np

from jaxseg.data import pipeline, stats
from tests.helpers import ROOT, tiny_config


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


def _prepared_copy(data_dir, tmp_path):
  copy = tmp_path / "tfds"
  shutil.copytree(data_dir, copy)
  config = tiny_config(str(copy))
  spec, builder = pipeline.prepare(config)
  return config, spec, builder


def _band_moments(builder, split):
  pixels = np.concatenate(
    [np.asarray(x["image"], np.float64).reshape(-1, 3) for x in builder.as_data_source(split)]
  )
  return pixels.mean(0), pixels.std(0)


def test_band_statistics_of_the_split_asked_for_stored_only_for_training(data_dir, tmp_path):
  config, spec, builder = _prepared_copy(data_dir, tmp_path)
  stored = os.path.join(builder.data_dir, pipeline.BAND_STATS_FILE)
  val = pipeline.band_statistics(config, spec, builder, split="validation", recompute=True)
  mean, std = _band_moments(builder, "validation")
  assert val["split"] == "validation" and val["images"] == 20
  np.testing.assert_allclose(val["mean"], mean, atol=1e-4)
  np.testing.assert_allclose(val["std"], std, atol=1e-4)
  assert not os.path.exists(stored)  # Normalisation uses the training split's only.
  train = pipeline.band_statistics(config, spec, builder)
  np.testing.assert_allclose(train["mean"], _band_moments(builder, "train")[0], atol=1e-4)
  with open(stored) as f:
    assert json.load(f)["split"] == "train"


def test_stats_reads_the_split_named_whatever_the_training_split(data_dir, tmp_path):
  # VOC's default variant without SBD: config.data.train_split (train_aug) is
  # not there, but the split asked for is.
  _prepared_copy(data_dir, tmp_path)
  command = [sys.executable, "-m", "jaxseg.data.stats", "--config=configs/default.py",
             "--config.data.variant=tiny", f"--config.data.data_dir={tmp_path / 'tfds'}",
             "--config.data.train_split=train_aug"]  # fmt: skip
  ok = subprocess.run([*command, "--split=validation"], capture_output=True, text=True, cwd=ROOT)
  assert ok.returncode == 0, ok.stderr
  assert "synthetic_shapes / validation" in ok.stdout and "Not stored" in ok.stdout
  bad = subprocess.run([*command, "--split=val"], capture_output=True, text=True, cwd=ROOT)
  assert bad.returncode == 2
  assert "error: synthetic_shapes has no split 'val'" in bad.stderr
  assert "its splits: train, validation" in bad.stderr and "Traceback" not in bad.stderr
