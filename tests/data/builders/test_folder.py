"""A user's folder of images and masks, checked and built once."""

import json

import numpy as np
import pytest

from jaxseg import config_files
from jaxseg.data import pipeline
from jaxseg.parallel import sharding
from jaxseg.training import loop
from tests.helpers import SIZES, dataset_config, eval_labels_by_name, write_folder


def test_folder_of_index_masks_trains_and_validates_on_what_was_written(tmp_path):
  rng = np.random.default_rng(3)
  masks = [rng.integers(0, 3, size=s) for s in SIZES]
  masks[2][:3] = 255
  folder = tmp_path / "mine"
  write_folder(folder, rng, {"classes": ["background", "cat", "dog"]}, masks)
  config = dataset_config(str(tmp_path / "data"), "folder", folder=str(folder))
  config.data.max_size = (32, 32)
  spec, builder, val = eval_labels_by_name(config)
  assert spec.class_names == ("background", "cat", "dog")
  assert list(val) == ["im0"]  # Every tenth image is held out.
  np.testing.assert_array_equal(val["im0"], masks[0])
  assert len(builder.as_data_source("train")) == 5
  batch = next(pipeline.train_iterator(config, spec, builder, sharding.make_mesh(config)))
  assert batch["image"].shape == (2, 32, 32, 3)
  for label, (h, w) in zip(batch["label"], batch["size"], strict=True):
    assert any(np.array_equal(label[:h, :w], m) for m in masks[1:])


def test_folder_rgb_masks_map_through_the_palette(tmp_path):
  rng = np.random.default_rng(4)
  palette = [[0, 0, 0], [200, 10, 10], [10, 200, 10]]
  indices = [rng.integers(0, 3, size=s) for s in SIZES]
  rgb = [np.asarray(palette, np.uint8)[m] for m in indices]
  folder = tmp_path / "rgb"
  write_folder(folder, rng, {"classes": ["a", "b", "c"], "palette": palette}, rgb, rgb=True)
  config = dataset_config(str(tmp_path / "data"), "folder", folder=str(folder))
  _, _, val = eval_labels_by_name(config)
  np.testing.assert_array_equal(val["im0"], indices[0])


def test_folder_binary_0_255_masks_get_a_message_with_the_fix(tmp_path):
  rng = np.random.default_rng(5)
  masks = [np.where(rng.random(s) < 0.5, 0, 255) for s in SIZES]
  folder = tmp_path / "binary"
  write_folder(folder, rng, {"classes": ["background", "crack"]}, masks)
  config = dataset_config(str(tmp_path / "data"), "folder", folder=str(folder))
  with pytest.raises(
    ValueError, match=r'im\d\.png: a 0/255 binary mask.*"label_map": \{"255": 1\}'
  ):
    pipeline.prepare(config)
  # With the suggested label map it builds, 255 becoming class 1.
  meta = {"classes": ["background", "crack"], "label_map": {"255": 1}}
  (folder / "classes.json").write_text(json.dumps(meta))
  _, _, val = eval_labels_by_name(config)
  np.testing.assert_array_equal(val["im0"], masks[0] // 255)


def test_folder_errors_name_the_file(tmp_path):
  rng = np.random.default_rng(6)
  masks = [rng.integers(0, 2, size=s) for s in SIZES]
  masks[3] = masks[3][:-1]  # Size mismatch.
  folder = tmp_path / "broken"
  write_folder(folder, rng, {"classes": ["a", "b"]}, masks)
  config = dataset_config(str(tmp_path / "data"), "folder", folder=str(folder))
  with pytest.raises(ValueError, match=r"im3\.png: mask size \(20, 21\) differs from image"):
    pipeline.prepare(config)
  (folder / "masks" / "im3.png").unlink()
  with pytest.raises(FileNotFoundError, match=r"im3\.png: mask missing"):
    pipeline.prepare(config)
  (folder / "classes.json").unlink()
  with pytest.raises(FileNotFoundError, match=r"classes\.json"):
    pipeline.prepare(config)


@pytest.mark.slow
def test_unet_folder_config_trains_on_a_users_folder(tmp_path):
  """`python -m jaxseg.main --config=configs/unet.py:folder --config.data.folder=DIR`,
  shrunk to seconds: a tiny U-Net, small crops, two steps and an evaluation."""
  rng = np.random.default_rng(8)
  folder = tmp_path / "user"
  write_folder(folder, rng, {"classes": ["a", "b", "c"]}, [rng.integers(0, 3, s) for s in SIZES])
  config = config_files.load_config("configs/unet.py:folder")
  with config.unlocked():
    config.data.folder = str(folder)
    config.data.data_dir = str(tmp_path / "data")
    config.data.max_size = (32, 32)
    config.model.features = 4
    config.crop_size = (16, 16)
    config.batch_size = config.eval_batch_size = 2
    config.num_train_steps = config.eval_every_steps = 2
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert result["step"] == 2 and 0 <= result["miou"] <= 1
  with open(tmp_path / "run" / "metrics.json") as f:
    assert list(json.load(f)["latest"]["iou"]) == ["a", "b", "c"]


def test_folder_class_file_may_be_yaml_and_is_checked(tmp_path):
  from jaxseg.data.builders import folder

  (tmp_path / "classes.yaml").write_text(
    "classes: [sky, ground]\npalette: [[0, 0, 255], [0, 128, 0]]\n"
  )
  meta = folder.read_meta(str(tmp_path))
  assert meta.class_names == ("sky", "ground") and meta.palette.tolist()[0] == [0, 0, 255]
  (tmp_path / "classes.yaml").write_text("classes: [sky, ground]\npalete: []\n")
  with pytest.raises(ValueError, match=r"unknown keys \['palete'\]"):
    folder.read_meta(str(tmp_path))
