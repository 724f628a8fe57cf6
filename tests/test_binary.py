"""Binary foreground/background segmentation: a 0/255 folder trains with
cross-entropy + Dice, reports foreground metrics at the threshold, and
predict writes cut-outs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxseg import config_files, inference
from jaxseg.data.builders import synthetic_shapes
from jaxseg.export import serving
from jaxseg.scoring import metrics, tables, writers
from jaxseg.training import loop, runs
from tests.helpers import run_command


def test_foreground_metrics_of_a_hand_built_confusion_matrix():
  # Rows truth (background, star), columns prediction.
  confusion = np.array([[90, 4], [2, 6]])
  result = metrics.compute_metrics(confusion, foreground=1, threshold=0.3)
  fg = result["foreground"]
  assert fg["iou"] == pytest.approx(6 / 12)
  assert fg["f1"] == pytest.approx(12 / 18)
  assert fg["precision"] == pytest.approx(6 / 10)
  assert fg["recall"] == pytest.approx(6 / 8)
  assert fg["iou"] == pytest.approx(result["iou"][1])
  assert fg["f1"] == pytest.approx(result["dice"][1])
  table = tables.format_table(result, ["background", "star"])
  assert "star (probability >= 0.3): IoU 50.00  F1 66.67  precision 60.00  recall 75.00" in table
  record = writers.to_json(result, ["background", "star"], step=7)["foreground"]
  assert record == {"class": "star", "threshold": 0.3, "iou": 0.5, "f1": 0.666667,
                    "precision": 0.6, "recall": 0.75}  # fmt: skip
  assert np.isnan(metrics.foreground_metrics(np.array([[5, 0], [0, 0]]), 1)["precision"])


def test_decide_thresholds_the_foreground_probability():
  probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
  np.testing.assert_array_equal(inference.decide(probs), [0, 0, 1])
  np.testing.assert_array_equal(inference.decide(probs, foreground=1, threshold=0.3), [0, 1, 1])
  np.testing.assert_array_equal(inference.decide(jnp.asarray(probs), 0, 0.7), [0, 1, 1])


def _config(arg=""):
  return config_files.load_config("configs/binary.py" + (f":{arg}" if arg else ""))


def test_binary_mode_is_checked_against_the_dataset():
  config = _config()
  assert inference.decision(config, ("background", "foreground")) == (1, 0.5)
  with pytest.raises(ValueError, match=r"config.binary.foreground='foreground'.*\['bg', 'fg'\]"):
    inference.decision(config, ("bg", "fg"))
  with pytest.raises(ValueError, match="two-class"):
    inference.decision(config, ("background", "foreground", "other"))
  config.binary.threshold = 1.0
  with pytest.raises(ValueError, match=r"config\.binary\.threshold"):
    inference.decision(config, ("background", "foreground"))


def _binary_run(root):
  """A few steps of configs/binary.py on stars written as a 0/255 folder."""
  folder = root / "stars"
  synthetic_shapes.write_binary_folder(str(folder), "star", 24, 6, size=64)
  config = _config()
  config.data.folder = str(folder)
  config.data.data_dir = str(root / "tfds")
  config.data.max_size = (64, 64)
  config.binary.foreground = "star"
  config.binary.threshold = 0.3
  config.model.features = 8
  config.crop_size = (64, 64)
  config.batch_size = config.eval_batch_size = 8
  config.num_train_steps = config.eval_every_steps = 3
  config.num_pictures = 0
  workdir = str(root / "run")
  return folder, workdir, loop.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_binary_folder_trains_with_dice_reports_the_foreground_and_predicts_cutouts(tmp_path):
  # One test: training the run is most of its time.
  folder, workdir, result = _binary_run(tmp_path)
  masks = [np.asarray(Image.open(p)) for p in sorted((folder / "masks" / "val").iterdir())]
  assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) <= {0, 255}
  assert json.loads((folder / "classes.json").read_text())["label_map"] == {"255": 1}
  fg = result["foreground"]
  assert result["threshold"] == 0.3 and fg["index"] == 1
  assert fg["iou"] == pytest.approx(result["iou"][1], nan_ok=True)
  with open(f"{workdir}/metrics.json") as f:
    assert json.load(f)["latest"]["foreground"]["class"] == "star"
  with open(f"{workdir}/scalars.jsonl") as f:
    logged = [json.loads(line) for line in f]
  # Both terms were trained and logged.
  assert any("train/loss_dice" in r and "train/loss_cross_entropy" in r for r in logged)
  # jaxseg.evaluate scores at the same threshold as training-time evaluation.
  scored = run_command("jaxseg.evaluate", f"--workdir={workdir}")
  assert scored.returncode == 0, scored.stderr[-3000:]
  assert "star (probability >= 0.3): IoU" in scored.stdout
  with open(f"{workdir}/metrics.json") as f:
    recorded = json.load(f)
  assert recorded["evaluation"]["foreground"] == recorded["latest"]["foreground"]

  tmp_path = tmp_path / "predicted"
  image_path = sorted((folder / "images" / "val").iterdir())[0]
  out = run_command(
    "jaxseg.predict", f"--workdir={workdir}", f"--input={image_path}", f"--output={tmp_path}",
    "--cutout",
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  image = np.asarray(Image.open(image_path).convert("RGB"))
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  probs = inference.whole(predict_fn, image)
  cutout = Image.open(tmp_path / f"{image_path.stem}_cutout.png")
  assert cutout.mode == "RGBA"
  rgba = np.asarray(cutout)
  np.testing.assert_array_equal(rgba[..., :3], image)
  np.testing.assert_allclose(rgba[..., 3], np.round(255 * (1 - probs[..., 0])), atol=1)
  # The label map is the foreground where its probability reaches the run's 0.3.
  label = np.asarray(Image.open(tmp_path / f"{image_path.stem}.png"))
  np.testing.assert_array_equal(label, probs[..., 1] >= 0.3)

  hard = run_command(
    "jaxseg.predict", f"--workdir={workdir}", f"--input={image_path}",
    f"--output={tmp_path / 'hard'}", "--cutout", "--cutout_threshold=0.3",
    "--mode=slide", "--crop_size=48,48",
  )  # fmt: skip
  assert hard.returncode == 0, hard.stderr[-3000:]
  alpha = np.asarray(Image.open(tmp_path / "hard" / f"{image_path.stem}_cutout.png"))[..., 3]
  slide = inference.slide(predict_fn, image, crop_size=(48, 48), stride=(32, 32))
  np.testing.assert_array_equal(alpha, np.where(1 - slide[..., 0] >= 0.3, 255, 0))

  wrong = run_command(
    "jaxseg.predict", f"--workdir={workdir}", f"--input={image_path}", f"--output={tmp_path}",
    "--cutout", "--background=sky",
  )  # fmt: skip
  assert wrong.returncode == 2
  assert wrong.stderr.strip().splitlines()[-1].startswith("error: --cutout needs a background")
  assert "Traceback" not in wrong.stderr


def test_serving_thresholds_a_binary_exports_foreground():
  class Stub(serving.ExportedSegmenter):
    def __init__(self, logits):
      self.metadata = {"binary": {"foreground": 1, "threshold": 0.3}}
      self.tile, self.pad_colour, self._logits = (2, 2), np.zeros(3, np.uint8), logits

    def logits(self, images):
      return np.repeat(self._logits[None], len(images), 0)

  # P(foreground) = sigmoid(l1 - l0): 0.27, 0.38, 0.5, 0.73.
  logits = np.array([[[0.0, -1.0], [0.0, -0.5]], [[0.0, 0.0], [0.0, 1.0]]], np.float32)
  labels = Stub(logits).predict(np.zeros((2, 2, 3), np.uint8))
  np.testing.assert_array_equal(labels, [[0, 1], [1, 1]])


def test_deciding_on_logits_equals_deciding_on_probabilities():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(500, 2)) * 3, jnp.float32)
  probs = np.asarray(jax.nn.softmax(logits))
  for foreground, threshold in ((None, 0.5), (1, 0.5), (1, 0.2), (0, 0.9)):
    np.testing.assert_array_equal(
      inference.decide_logits(logits, foreground, threshold),
      inference.decide(probs, foreground, threshold),
    )
