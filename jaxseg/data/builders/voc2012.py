"""`voc2012`: Pascal VOC 2012 segmentation, optionally with SBD's extra labels.

Read from the manual directory (`config.data.manual_dir`, `$JAXSEG_MANUAL_DIR`
or TFDS's `<data_dir>/downloads/manual`), which holds either the official
`VOCtrainval_11-May-2012.tar` or its extracted `VOCdevkit/`; for the `aug`
config also SBD's `benchmark.tgz` or its extracted `benchmark_RELEASE/`.

Labels are the palette-indexed PNGs of `SegmentationClass/`, read as indices
(never as colours): 0 background, 1..20 the object classes, 255 the "void"
border, which is ignored. Splits come from `ImageSets/Segmentation`:
`train` (1,464) and `validation` (1,449). The `aug` config adds `train_aug`
(10,582): SBD's train and val plus VOC train, minus VOC val, labelled by the
VOC PNG where one exists and by SBD's `cls/*.mat` otherwise.
"""

import os
import tarfile

import numpy as np
import tensorflow_datasets as tfds

from jaxseg import errors
from jaxseg.data import labels
from jaxseg.data.builders import common

VOC_TAR = "VOCtrainval_11-May-2012.tar"
SBD_TGZ = "benchmark.tgz"


class Voc2012(tfds.core.GeneratorBasedBuilder):
  """Pascal VOC 2012 semantic segmentation (21 classes)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}  # noqa: RUF012
  BUILDER_CONFIGS = [  # noqa: RUF012 (TFDS reads this class attribute)
    tfds.core.BuilderConfig(name="default", description="VOC 2012 train and validation."),
    tfds.core.BuilderConfig(name="aug", description="Plus train_aug (10,582) from SBD."),
  ]
  DEFAULT_CONFIG_NAME = "default"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Put `{VOC_TAR}` (from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) or the
  `VOCdevkit/` it extracts to in the manual directory. For `voc2012/aug`, also
  SBD's `{SBD_TGZ}` (from
  http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/)
  or the `benchmark_RELEASE/` it extracts to.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.segmentation_features("jpeg"),
      supervised_keys=("image", "segmentation_mask"),
      homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual = os.fspath(dl_manager.manual_dir)
    voc = os.path.join(
      _extracted(manual, VOC_TAR, "VOCdevkit", dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS),
      "VOCdevkit",
      "VOC2012",
    )
    lists = os.path.join(voc, "ImageSets", "Segmentation")
    train, val = (
      _read_list(os.path.join(lists, "train.txt")),
      _read_list(os.path.join(lists, "val.txt")),
    )
    splits = {
      "train": self._generate_examples(voc, train, None),
      "validation": self._generate_examples(voc, val, None),
    }
    if self.builder_config.name == "aug":
      sbd = os.path.join(
        _extracted(
          manual, SBD_TGZ, "benchmark_RELEASE", dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS
        ),
        "benchmark_RELEASE",
        "dataset",
      )
      sbd_ids = _read_list(os.path.join(sbd, "train.txt")) + _read_list(
        os.path.join(sbd, "val.txt")
      )
      excluded = set(val)
      aug = sorted(set(sbd_ids + train) - excluded)
      splits["train_aug"] = self._generate_examples(voc, aug, os.path.join(sbd, "cls"), set(train))
    return splits

  def _generate_examples(self, voc, ids, sbd_cls, voc_labelled=None):
    for image_id in ids:
      image = os.path.join(voc, "JPEGImages", f"{image_id}.jpg")
      if sbd_cls is None or image_id in voc_labelled:
        mask = common.read_index_png(os.path.join(voc, "SegmentationClass", f"{image_id}.png"))
      else:
        mask = read_sbd_mat(os.path.join(sbd_cls, f"{image_id}.mat"))
      if not os.path.exists(image):
        raise errors.MissingInput(f"voc2012: {image} is missing (listed in the split files)")
      yield image_id, {"image": image, "segmentation_mask": mask[..., None], "file_name": image_id}


def _extracted(manual: str, archive: str, folder: str, dl_manager, instructions: str) -> str:
  """The directory holding `folder`: the manual dir itself, or `archive` extracted."""
  if os.path.isdir(os.path.join(manual, folder)):
    return manual
  path = os.path.join(manual, archive)
  if not os.path.exists(path):
    raise errors.MissingInput(
      f"Neither {os.path.join(manual, folder)}/ nor {path} exists. {instructions.strip()}"
    )
  if not tarfile.is_tarfile(path):
    raise errors.InvalidInput(f"{path} is not a tar archive (truncated download?)")
  return os.fspath(dl_manager.extract(path))


def _read_list(path: str) -> list[str]:
  if not os.path.exists(path):
    raise errors.MissingInput(f"voc2012: split file {path} is missing")
  with open(path) as f:
    return [line.split()[0] for line in f if line.strip()]


def read_sbd_mat(path: str) -> np.ndarray:
  """SBD's `cls/<id>.mat` -> `[H, W]` uint8 class indices (0..20, no void border)."""
  from scipy import io as scipy_io  # Only needed to build train_aug.

  if not os.path.exists(path):
    raise errors.MissingInput(f"SBD label file {path} is missing")
  mask = scipy_io.loadmat(path)["GTcls"][0]["Segmentation"][0]
  if mask.max() >= len(labels.VOC_CLASSES):
    raise errors.InvalidInput(f"{path}: class index {mask.max()} is not a VOC class")
  return mask.astype(np.uint8)
