"""Training-time evaluation scores validation images of any size at their own
resolution: grouped by size into a few padded shapes, the largest by sliding
window when they exceed a batch's pixels."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxseg import inference
from jaxseg.data import pipeline
from jaxseg.data.builders import folder as folder_builder
from jaxseg.parallel import sharding
from jaxseg.training import loop, runs
from tests.helpers import tiny_folder_config

SMALL, LARGE = (50, 60), (300, 400)
# A batch's pixels: four small images' buckets (64×64) or one large one's (320×416).
BATCH_PIXELS = 2**18


def _write_folder(root, rng):
  """Train: 40×48 images. Val: three 50×60 and two 300×400 (a phone photo's
  shape, scaled with the batch's pixels so that it is evaluated alone)."""
  for split, sizes in (("train", [(40, 48)] * 6), ("val", [SMALL, LARGE, SMALL, LARGE, SMALL])):
    (root / "images" / split).mkdir(parents=True)
    (root / "masks" / split).mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
      image = rng.integers(0, 256, (h, w, 3), np.uint8)
      mask = (image[..., 0] > 128).astype(np.uint8)  # Learnable: red is class 1.
      Image.fromarray(image).save(root / "images" / split / f"{split}{i}.png")
      Image.fromarray(mask).save(root / "masks" / split / f"{split}{i}.png")
  (root / "classes.json").write_text(json.dumps({"classes": ["dark", "red"]}))


def _config(tmp_path, folder):
  return tiny_folder_config(
    str(tmp_path / "data"), folder, eval_batch_size=4, **{"evaluation.batch_pixels": BATCH_PIXELS}
  )


def _independent_scores(workdir, folder, label_of):
  """IoU of the run's best checkpoint over the val images, each predicted
  alone by `label_of(predict_fn, image)`."""
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  confusion = np.zeros((2, 2), np.int64)
  for path in sorted((folder / "images" / "val").iterdir()):
    image = np.asarray(Image.open(path))
    label = np.asarray(Image.open(folder / "masks" / "val" / path.name)).astype(np.int64)
    predicted = label_of(predict_fn, image)
    confusion += np.bincount(label.ravel() * 2 + predicted.ravel(), minlength=4).reshape(2, 2)
  return np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))


@pytest.mark.slow
def test_validation_images_of_any_size_evaluate_during_training(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "photos"
  _write_folder(folder, rng)
  config = _config(tmp_path, folder)
  workdir = str(tmp_path / "run")
  result = loop.train_and_evaluate(config, workdir)
  assert result["step"] == 2

  # Two padded shapes, one batch each: the large images alone (their pixels).
  spec, builder = pipeline.prepare(config)
  plan = pipeline.eval_plan(config, spec, builder, sharding.make_mesh(config))
  assert {shape for shape, _ in plan.batches} == {(64, 64), (320, 416)}
  assert sorted(i for _, idx in plan.batches for i in idx if i >= 0) == list(range(5))
  assert not plan.slide

  def whole_at_bucket(predict_fn, image):
    h, w = image.shape[:2]
    padded = inference.pad_to(image, pipeline.bucket(h), pipeline.bucket(w))
    return predict_fn(padded[None])[0, :h, :w].argmax(-1)

  expected = _independent_scores(workdir, folder, whole_at_bucket)
  np.testing.assert_allclose(result["iou"], expected, atol=2e-4)

  # Slide mode by config (memory bounded by a band of tiles): the same run
  # re-evaluated equals jaxseg's sliding-window inference image by image.
  slid = str(tmp_path / "slid")
  shutil.copytree(workdir, slid)
  with config.unlocked():
    config.evaluation.mode = "slide"
    config.evaluation.crop_size = (128, 128)
  again = loop.train_and_evaluate(config, slid)

  def slide(predict_fn, image):
    return inference.slide(predict_fn, image, crop_size=(128, 128), stride=(85, 85)).argmax(-1)

  expected = _independent_scores(slid, folder, slide)
  np.testing.assert_allclose(again["iou"], expected, atol=2e-4)


def test_images_larger_than_a_batch_are_planned_for_sliding_windows(tmp_path):
  rng = np.random.default_rng(1)
  folder = tmp_path / "photos"
  _write_folder(folder, rng)
  config = _config(tmp_path, folder)
  config.evaluation.batch_pixels = 64 * 64 * 4
  spec, builder = pipeline.prepare(config)
  plan = pipeline.eval_plan(config, spec, builder, sharding.make_mesh(config))
  decoded, _ = pipeline.decoded_split(config, spec, builder, spec.eval_split)
  large = [i for i in range(5) if decoded[i]["label"].shape == LARGE]
  assert plan.slide == tuple(large) and len(large) == 2
  [(shape, indices)] = plan.batches
  assert shape == (64, 64) and sorted(indices) == sorted({-1, 0, 1, 2, 3, 4} - set(large))
  assert "5 images in 1 batches of 1 shapes, 2 by sliding window" in plan.describe()
  assert folder_builder.image_format(str(folder)) == (3, np.uint8)


def test_bucket_sizes_are_few_and_hold_the_image():
  sizes = range(1, 4097)
  buckets = {pipeline.bucket(n) for n in sizes}
  assert all(pipeline.bucket(n) >= n and pipeline.bucket(n) % 32 == 0 for n in sizes)
  assert len(buckets) == 40  # 8 up to 256, then 8 per octave up to 4096.
  assert all(pipeline.bucket(n) <= max(32, n * 1.125 + 32) for n in sizes)
  assert [pipeline.bucket(n) for n in (500, 512, 1024, 1025, 2000)] == [512, 512, 1024, 1152, 2048]
