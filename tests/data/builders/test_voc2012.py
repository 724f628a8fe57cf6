"""Pascal VOC 2012 (+ SBD) from a devkit directory or the official tar."""

import tarfile

import numpy as np
import pytest
from PIL import Image

from jaxseg.data import labels, pipeline
from tests.helpers import dataset_config, eval_labels_by_name, write_voc_devkit


def test_voc2012_from_extracted_devkit_with_sbd(tmp_path):
  rng = np.random.default_rng(0)
  manual = tmp_path / "manual"
  ids, written = write_voc_devkit(manual, rng)
  config = dataset_config(str(tmp_path / "data"), "voc2012", variant="aug", manual_dir=str(manual))
  spec, builder, val = eval_labels_by_name(config)
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
  ids, written = write_voc_devkit(extracted, rng)
  manual = tmp_path / "manual"
  manual.mkdir()
  with tarfile.open(manual / "VOCtrainval_11-May-2012.tar", "w") as tar:
    tar.add(extracted / "VOCdevkit", arcname="VOCdevkit")
  config = dataset_config(str(tmp_path / "data"), "voc2012", manual_dir=str(manual))
  _, builder, val = eval_labels_by_name(config)
  assert set(builder.info.splits) == {"train", "validation"}
  np.testing.assert_array_equal(val[ids[5]], written[ids[5]])


def test_voc2012_missing_manual_dir_names_what_to_put_there(tmp_path):
  config = dataset_config(str(tmp_path / "data"), "voc2012", manual_dir=str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match=r"VOCtrainval_11-May-2012\.tar"):
    pipeline.prepare(config)
  assert not list((tmp_path / "data").rglob("*.array_record*"))


def test_voc2012_rgb_label_png_is_refused_naming_the_file(tmp_path):
  manual = tmp_path / "manual"
  ids, written = write_voc_devkit(manual, np.random.default_rng(2))
  bad = manual / "VOCdevkit/VOC2012/SegmentationClass" / f"{ids[1]}.png"
  Image.fromarray(labels.colorize(written[ids[1]], labels.VOC_PALETTE)).save(bad)
  config = dataset_config(str(tmp_path / "data"), "voc2012", manual_dir=str(manual))
  with pytest.raises(ValueError, match=f"{ids[1]}.png: label PNG has mode 'RGB'"):
    pipeline.prepare(config)
  # Nothing half-written: the next attempt starts clean.
  version_dirs = list((tmp_path / "data").glob("voc2012/default/*"))
  assert not version_dirs, version_dirs
