"""Real-format datasets, built from small directories written here, read back
through the real pipeline with their label values checked."""

import json
import os
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import io as scipy_io

from jaxseg import config_files, sharding, train
from jaxseg.data import get_dataset_spec, labels, pipeline
from tests.helpers import tiny_config

SIZES = [(20, 24), (17, 30), (26, 18), (21, 21), (19, 27), (24, 16)]


def _image(rng, h, w):
  return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _palette_png(path, indices, palette):
  im = Image.fromarray(indices.astype(np.uint8), mode="P")
  flat = np.zeros((256, 3), np.uint8)
  flat[: len(palette)] = palette
  im.putpalette(flat.ravel().tolist())
  im.save(path)


def _write_voc(root, rng):
  """A VOCdevkit with 6 images (4 train, 2 val) and an SBD release with 3 more."""
  voc = os.path.join(root, "VOCdevkit", "VOC2012")
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    os.makedirs(os.path.join(voc, sub))
  written = {}
  ids = [f"2007_{i:06d}" for i in range(len(SIZES))] + [f"2008_{i:06d}" for i in range(3)]
  for image_id, (h, w) in zip(ids, [*SIZES, (15, 22), (23, 19), (18, 18)], strict=True):
    Image.fromarray(_image(rng, h, w)).save(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
    label = rng.integers(0, 21, size=(h, w))
    label[0, :] = 255  # The void border.
    written[image_id] = label
    if image_id.startswith("2007"):
      png = os.path.join(voc, "SegmentationClass", f"{image_id}.png")
      _palette_png(png, label, labels.VOC_PALETTE)
  lists = os.path.join(voc, "ImageSets", "Segmentation")
  with open(os.path.join(lists, "train.txt"), "w") as f:
    f.write("\n".join(ids[:4]) + "\n")
  with open(os.path.join(lists, "val.txt"), "w") as f:
    f.write("\n".join(ids[4:6]) + "\n")
  sbd = os.path.join(root, "benchmark_RELEASE", "dataset")
  os.makedirs(os.path.join(sbd, "cls"))
  for image_id in [*ids[6:], ids[4]]:  # One SBD image is in VOC val: excluded.
    sbd_label = np.where(written[image_id] == 255, 0, written[image_id]).astype(np.uint8)
    if image_id.startswith("2008"):
      written[image_id] = sbd_label
    gt = {"Segmentation": sbd_label, "Boundaries": np.zeros(1), "CategoriesPresent": np.ones(1)}
    scipy_io.savemat(os.path.join(sbd, "cls", f"{image_id}.mat"), {"GTcls": gt})
  with open(os.path.join(sbd, "train.txt"), "w") as f:
    f.write("\n".join(ids[6:8]) + "\n")
  with open(os.path.join(sbd, "val.txt"), "w") as f:
    f.write("\n".join([ids[8], ids[4], ids[0]]) + "\n")
  return ids, written


def _config(data_dir, name, **data):
  config = tiny_config(data_dir)
  config.data.name = name
  config.data.variant = ""
  config.batch_size = 2
  config.eval_batch_size = 2
  for key, value in data.items():
    setattr(config.data, key, value)
  return config


def _eval_labels(config):
  """Every validation label, cropped back from its padding, by file name."""
  spec, builder = pipeline.prepare(config)
  mesh = sharding.make_mesh(config)
  out = []
  for batch in pipeline.eval_batches(config, spec, builder, mesh):
    for label, (h, w), keep in zip(batch["label"], batch["size"], batch["mask"], strict=True):
      if keep:
        assert np.all(label[h:] == 255) and np.all(label[:, w:] == 255)
        out.append(label[:h, :w])
  source = builder.as_data_source(config.data.eval_split or spec.eval_split)
  names = [source[i]["file_name"].decode() for i in range(len(source))]
  return spec, builder, dict(zip(names, out, strict=True))


def test_voc2012_from_extracted_devkit_with_sbd(tmp_path):
  rng = np.random.default_rng(0)
  manual = tmp_path / "manual"
  ids, written = _write_voc(manual, rng)
  config = _config(str(tmp_path / "data"), "voc2012", variant="aug", manual_dir=str(manual))
  config.data.eval_size = (32, 32)
  spec, builder, val = _eval_labels(config)
  assert spec.num_classes == 21
  assert sorted(val) == ids[4:6]
  for image_id, got in val.items():
    np.testing.assert_array_equal(got, written[image_id])
  # train_aug: VOC train (PNG labels) + SBD-only ids (mat labels), minus VOC val.
  source = builder.as_data_source("train_aug")
  names = sorted(source[i]["file_name"].decode() for i in range(len(source)))
  assert names == sorted(ids[:4] + ids[6:])
  for i in range(len(source)):
    example = source[i]
    np.testing.assert_array_equal(
      example["segmentation_mask"][..., 0], written[example["file_name"].decode()]
    )


def test_voc2012_from_the_official_tar(tmp_path):
  rng = np.random.default_rng(1)
  extracted = tmp_path / "extracted"
  ids, written = _write_voc(extracted, rng)
  manual = tmp_path / "manual"
  manual.mkdir()
  with tarfile.open(manual / "VOCtrainval_11-May-2012.tar", "w") as tar:
    tar.add(extracted / "VOCdevkit", arcname="VOCdevkit")
  config = _config(str(tmp_path / "data"), "voc2012", manual_dir=str(manual))
  config.data.eval_size = (32, 32)
  _, builder, val = _eval_labels(config)
  assert set(builder.info.splits) == {"train", "validation"}
  np.testing.assert_array_equal(val[ids[5]], written[ids[5]])


def test_voc2012_missing_manual_dir_names_what_to_put_there(tmp_path):
  config = _config(str(tmp_path / "data"), "voc2012", manual_dir=str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match=r"VOCtrainval_11-May-2012\.tar"):
    pipeline.prepare(config)
  assert not list((tmp_path / "data").rglob("*.array_record*"))


def test_voc2012_rgb_label_png_is_refused_naming_the_file(tmp_path):
  manual = tmp_path / "manual"
  ids, written = _write_voc(manual, np.random.default_rng(2))
  bad = manual / "VOCdevkit/VOC2012/SegmentationClass" / f"{ids[1]}.png"
  Image.fromarray(labels.colorize(written[ids[1]], labels.VOC_PALETTE)).save(bad)
  config = _config(str(tmp_path / "data"), "voc2012", manual_dir=str(manual))
  with pytest.raises(ValueError, match=f"{ids[1]}.png: label PNG has mode 'RGB'"):
    pipeline.prepare(config)
  # Nothing half-written: the next attempt starts clean.
  version_dirs = list((tmp_path / "data").glob("voc2012/default/*"))
  assert not version_dirs, version_dirs


def _write_folder(root, rng, meta, masks, rgb=False, sizes=SIZES):
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  (root / "classes.json").write_text(json.dumps(meta))
  for i, ((h, w), mask) in enumerate(zip(sizes, masks, strict=True)):
    ext = "jpg" if i % 2 else "png"
    Image.fromarray(_image(rng, h, w)).save(root / "images" / f"im{i}.{ext}")
    if rgb:
      Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    else:
      Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"im{i}.png")


def test_folder_of_index_masks_trains_and_validates_on_what_was_written(tmp_path):
  rng = np.random.default_rng(3)
  masks = [rng.integers(0, 3, size=s) for s in SIZES]
  masks[2][:3] = 255
  folder = tmp_path / "mine"
  _write_folder(folder, rng, {"classes": ["background", "cat", "dog"]}, masks)
  config = _config(str(tmp_path / "data"), "folder", folder=str(folder))
  config.data.max_size = (32, 32)
  config.data.eval_size = (32, 32)
  spec, builder, val = _eval_labels(config)
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
  _write_folder(folder, rng, {"classes": ["a", "b", "c"], "palette": palette}, rgb, rgb=True)
  config = _config(str(tmp_path / "data"), "folder", folder=str(folder))
  config.data.eval_size = (32, 32)
  _, _, val = _eval_labels(config)
  np.testing.assert_array_equal(val["im0"], indices[0])


def test_folder_binary_0_255_masks_get_a_message_with_the_fix(tmp_path):
  rng = np.random.default_rng(5)
  masks = [np.where(rng.random(s) < 0.5, 0, 255) for s in SIZES]
  folder = tmp_path / "binary"
  _write_folder(folder, rng, {"classes": ["background", "crack"]}, masks)
  config = _config(str(tmp_path / "data"), "folder", folder=str(folder))
  with pytest.raises(
    ValueError, match=r'im\d\.png: a 0/255 binary mask.*"label_map": \{"255": 1\}'
  ):
    pipeline.prepare(config)
  # With the suggested label map it builds, 255 becoming class 1.
  meta = {"classes": ["background", "crack"], "label_map": {"255": 1}}
  (folder / "classes.json").write_text(json.dumps(meta))
  config.data.eval_size = (32, 32)
  _, _, val = _eval_labels(config)
  np.testing.assert_array_equal(val["im0"], masks[0] // 255)


def test_folder_errors_name_the_file(tmp_path):
  rng = np.random.default_rng(6)
  masks = [rng.integers(0, 2, size=s) for s in SIZES]
  masks[3] = masks[3][:-1]  # Size mismatch.
  folder = tmp_path / "broken"
  _write_folder(folder, rng, {"classes": ["a", "b"]}, masks)
  config = _config(str(tmp_path / "data"), "folder", folder=str(folder))
  with pytest.raises(ValueError, match=r"im3\.png: mask size \(20, 21\) differs from image"):
    pipeline.prepare(config)
  (folder / "masks" / "im3.png").unlink()
  with pytest.raises(FileNotFoundError, match=r"im3\.png: mask missing"):
    pipeline.prepare(config)
  (folder / "classes.json").unlink()
  with pytest.raises(FileNotFoundError, match=r"classes\.json"):
    pipeline.prepare(config)


def test_ade20k_reduces_the_zero_label(tmp_path):
  rng = np.random.default_rng(7)
  root = tmp_path / "manual" / "ADEChallengeData2016"
  written = {}
  for part in ("training", "validation"):
    (root / "images" / part).mkdir(parents=True)
    (root / "annotations" / part).mkdir(parents=True)
    for i, (h, w) in enumerate(SIZES[:3]):
      stem = f"ADE_{part[:5]}_{i:08d}"
      Image.fromarray(_image(rng, h, w)).save(root / "images" / part / f"{stem}.jpg")
      mask = rng.integers(0, 151, size=(h, w)).astype(np.uint8)
      Image.fromarray(mask).save(root / "annotations" / part / f"{stem}.png")
      written[stem] = mask
  config = _config(str(tmp_path / "data"), "ade20k", manual_dir=str(tmp_path / "manual"))
  config.data.eval_size = (32, 32)
  spec, _, val = _eval_labels(config)
  assert spec.num_classes == 150
  raw = written["ADE_valid_00000000"].astype(np.int32)
  np.testing.assert_array_equal(val["ADE_valid_00000000"], np.where(raw == 0, 255, raw - 1))


@pytest.mark.parametrize("name", ["cityscapes", "oxford_iiit_pet"])
def test_tfds_hosted_datasets_map_their_labels(name):
  spec = get_dataset_spec(name)
  tfds_name = "cityscapes/semantic_segmentation" if name == "cityscapes" else spec.tfds_name
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    example = tfds.builder(tfds_name).as_data_source(spec.eval_split)[0]
  raw = example[spec.label_key][..., 0]
  # Mocked images are random and of their own size; only the label is real here.
  example = {**example, spec.image_key: np.zeros((*raw.shape, 3), np.uint8)}
  check = pipeline._DecodeAndCheck(spec, name, spec.eval_split, 2)
  got = check(0, example)["label"]
  np.testing.assert_array_equal(got, np.asarray(spec.label_map)[raw])
  assert set(np.unique(got).tolist()) <= set(range(spec.num_classes)) | {255}


def test_unet_folder_config_trains_on_a_users_folder(tmp_path):
  """`python -m jaxseg.main --config=configs/unet.py:folder --config.data.folder=DIR`,
  shrunk to seconds: a tiny U-Net, small crops, two steps and an evaluation."""
  rng = np.random.default_rng(8)
  folder = tmp_path / "user"
  _write_folder(folder, rng, {"classes": ["a", "b", "c"]}, [rng.integers(0, 3, s) for s in SIZES])
  config = config_files.load_config("configs/unet.py:folder")
  with config.unlocked():
    config.data.folder = str(folder)
    config.data.data_dir = str(tmp_path / "data")
    config.data.max_size = config.data.eval_size = (32, 32)
    config.model.features = 4
    config.crop_size = (16, 16)
    config.batch_size = config.eval_batch_size = 2
    config.num_train_steps = config.eval_every_steps = 2
  result = train.train_and_evaluate(config, str(tmp_path / "run"))
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
