"""`python -m jaxseg.evaluate` on a trained run, and its scoring against NumPy."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxseg.scoring import metrics
from tests.helpers import run_command


def test_score_equals_an_independent_numpy_confusion_matrix():
  rng = np.random.default_rng(0)
  examples = []
  for h, w in [(5, 7), (9, 4), (6, 6)]:
    label = rng.integers(0, 4, size=(h, w))
    label[rng.random((h, w)) < 0.3] = 255
    examples.append({"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "label": label})
  predictions = {id(e["image"]): rng.integers(0, 4, size=e["label"].shape) for e in examples}

  def predict_many(images):
    return [predictions[id(image)] for image in images]

  got = metrics.confusion_of(predict_many, examples, 4, 255, batch_size=2)
  expected = np.zeros((4, 4), np.int64)
  for e in examples:
    p = predictions[id(e["image"])]
    for t, q in zip(e["label"].ravel(), p.ravel(), strict=True):
      if t != 255:
        expected[t, q] += 1
  np.testing.assert_array_equal(got, expected)
  tp = np.diag(expected)
  iou = tp / (expected.sum(0) + expected.sum(1) - tp)
  assert metrics.compute_metrics(got)["miou"] == pytest.approx(iou.mean())


def test_evaluate_cli_scores_the_run_as_training_did(trained_run):
  workdir, result = trained_run
  out = run_command("jaxseg.evaluate", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "mIoU" in out.stdout and "circle" in out.stdout
  with open(os.path.join(workdir, "metrics.json")) as f:
    saved = json.load(f)
  assert saved["evaluation"]["mode"] == "whole" and saved["evaluation"]["step"] == 4
  assert saved["latest"]["miou"] == pytest.approx(result["miou"], abs=1e-6)  # Kept.
  # Image by image at full resolution, the same checkpoint scores as the
  # batched evaluation during training did (the images are all 64x64 here).
  assert saved["evaluation"]["miou"] == pytest.approx(result["miou"], abs=2e-3)
  assert Image.open(os.path.join(workdir, "confusion_validation.png")).size[0] > 100
  # At the edges too: Boundary IoU per class and the trimap sweep.
  assert "BIoU" in out.stdout and "mBIoU" in out.stdout and "w=32" in out.stdout
  evaluation = saved["evaluation"]
  assert 0 <= evaluation["mbiou"] <= 1 and set(evaluation["biou"]) == set(evaluation["iou"])
  assert evaluation["boundary_width"] == "2% of the diagonal"
  assert [row["width"] for row in evaluation["trimap"]] == [1, 2, 4, 8, 16, 32]
  # The widest band holds nearly every pixel of these small images: its
  # accuracy approaches the whole image's.
  assert evaluation["trimap"][-1]["aacc"] == pytest.approx(evaluation["aacc"], abs=0.05)
  # Training's evaluation counted the same on the device, batch by batch.
  assert saved["latest"]["mbiou"] == pytest.approx(result["mbiou"], abs=1e-6)
  assert evaluation["mbiou"] == pytest.approx(result["mbiou"], abs=2e-3)
  for host, device in zip(evaluation["trimap"], result["trimap"], strict=True):
    assert host["miou"] == pytest.approx(device["miou"], abs=2e-3)
