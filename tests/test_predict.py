"""`python -m jaxseg.predict`: palette label maps and overlays for a folder of images."""

import numpy as np
from PIL import Image

from jaxseg import inference
from jaxseg.inference import outputs
from jaxseg.training import runs
from tests.helpers import run_command


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
  out = run_command(
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


def test_label_png_keeps_class_indices_and_shows_the_palette(tmp_path):
  label = np.array([[0, 1], [2, 255]], np.uint8)
  palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
  outputs.save_label_png(label, palette, str(tmp_path / "l.png"))
  saved = Image.open(tmp_path / "l.png")
  np.testing.assert_array_equal(np.asarray(saved), label)
  np.testing.assert_array_equal(np.asarray(saved.convert("RGB"))[0, 1], [255, 0, 0])


def test_overlay_blends_colours_over_the_image():
  image = np.full((3, 2, 3), 100, np.uint8)
  label = np.ones((3, 2), np.int64)
  palette = np.array([[0, 0, 0], [200, 0, 0]], np.uint8)
  blended = outputs.overlay(image, label, palette, alpha=0.5)
  np.testing.assert_array_equal(blended[0, 0], [150, 50, 50])
