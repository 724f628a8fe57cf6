"""`python -m jaxseg.evaluate` and `python -m jaxseg.predict` on a trained run,
and evaluation's scoring against NumPy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxseg import evaluate, inference, metrics, runs, train
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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

  got = evaluate.score(predict_many, examples, 4, 255, batch_size=2)
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


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("evaluate") / "run")
  return workdir, train.train_and_evaluate(tiny_config(data_dir), workdir)


def _run(module, *args):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
  )  # fmt: skip


def test_evaluate_cli_scores_the_run_as_training_did(trained_run):
  workdir, result = trained_run
  out = _run("jaxseg.evaluate", f"--workdir={workdir}")
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
  config = runs.load_run_config(workdir)
  assert runs.resolve_step(config, workdir, "latest") == 4
  with pytest.raises(ValueError, match=r"checkpoint '7': saved steps are \[2, 4\]"):
    runs.resolve_step(config, workdir, "7")


def test_predict_cli_writes_palette_labels_and_overlays_and_reports_failures(trained_run, tmp_path):
  workdir, _ = trained_run
  rng = np.random.default_rng(1)
  inputs, outputs = tmp_path / "in", tmp_path / "out"
  inputs.mkdir()
  images = {"small": rng.integers(0, 256, (40, 52, 3), np.uint8)}
  images["wide"] = rng.integers(0, 256, (70, 150, 3), np.uint8)
  Image.fromarray(images["small"]).save(inputs / "small.png")
  Image.fromarray(images["wide"]).save(inputs / "wide.png")
  (inputs / "broken.jpg").write_bytes(b"not a jpeg")
  out = _run(
    "jaxseg.predict", f"--workdir={workdir}", f"--input={inputs}", f"--output={outputs}",
    "--mode=slide", "--crop_size=32,32", "--stride=20,20",
  )  # fmt: skip
  assert out.returncode == 1, out.stderr[-3000:]
  assert "2 of 3 images predicted" in out.stdout
  assert "FAILED" in out.stderr and "broken.jpg" in out.stderr
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  for name, image in images.items():
    saved = Image.open(outputs / f"{name}.png")
    assert saved.mode == "P" and saved.size == (image.shape[1], image.shape[0])
    expected = inference.slide(predict_fn, image, crop_size=(32, 32), stride=(20, 20)).argmax(-1)
    np.testing.assert_array_equal(np.asarray(saved), expected)
    assert Image.open(outputs / f"{name}_overlay.jpg").size == saved.size


def test_export_runs_in_a_fresh_process_without_the_training_code(trained_run, tmp_path):
  workdir, _ = trained_run
  out = _run(
    "jaxseg.export", f"--workdir={workdir}", f"--output={tmp_path / 'export'}", "--size=64,64"
  )
  assert out.returncode == 0, out.stderr[-3000:]
  rng = np.random.default_rng(2)
  fits, large = (
    rng.integers(0, 256, (64, 64, 3), np.uint8),
    rng.integers(0, 256, (50, 90, 3), np.uint8),
  )
  np.save(tmp_path / "fits.npy", fits)
  np.save(tmp_path / "large.npy", large)
  script = (
    "import sys, numpy as np\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from serving import ExportedSegmenter\n"
    "m = ExportedSegmenter(sys.argv[1])\n"
    "batch = np.stack([np.load(sys.argv[2])] * 3)\n"
    "assert m.logits(batch).shape == (3, 64, 64, len(m.class_names))\n"  # Any batch size.
    "np.save(sys.argv[4], m.predict(np.load(sys.argv[2])))\n"
    "np.save(sys.argv[5], m.predict(np.load(sys.argv[3])))\n"
    "loaded = {k.split('.')[0] for k in sys.modules}\n"
    "assert not loaded & {'jaxseg', 'flax'}, 'imported training code'\n"
  )
  files = [str(tmp_path / n) for n in ("fits.npy", "large.npy", "a.npy", "b.npy")]
  served = subprocess.run(
    [sys.executable, "-c", script, str(tmp_path / "export"), *files],
    capture_output=True, text=True, cwd=str(tmp_path), timeout=600,
  )  # fmt: skip
  assert served.returncode == 0, served.stderr[-3000:]
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  np.testing.assert_array_equal(np.load(files[2]), inference.whole(predict_fn, fits).argmax(-1))
  expected = inference.slide(predict_fn, large, crop_size=(64, 64), stride=(42, 42)).argmax(-1)
  np.testing.assert_array_equal(np.load(files[3]), expected)
