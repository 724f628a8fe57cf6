"""`ade20k`: ADE20K as the SceneParsing challenge (150 classes) ships it.

Reads `ADEChallengeData2016/` or `ADEChallengeData2016.zip` from the manual
directory, else downloads the zip from MIT (about 920 MB). Splits: `train`
(20,210) and `validation` (2,000). Masks are stored as released (0 "other",
1..150 the classes); `jaxseg.data` maps them with "reduce zero label"
(0 -> ignored, others - 1), as every published ADE20K result does.

Why not TFDS's `scene_parse150`: it builds its labels from the 2017
challenge's `annotations_instance` PNGs, whose channels are instance-task
category and instance ids, not the 150 semantic classes.
"""

import os

import tensorflow_datasets as tfds

from jaxseg import errors
from jaxseg.data.builders import common

URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
FOLDER = "ADEChallengeData2016"


class Ade20k(tfds.core.GeneratorBasedBuilder):
  """ADE20K SceneParsing, 150 classes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}  # noqa: RUF012
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Optional: put `{FOLDER}.zip` or the `{FOLDER}/` it extracts to in the manual
  directory; without it the zip is downloaded from {URL}.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.segmentation_features("jpeg"),
      supervised_keys=("image", "segmentation_mask"),
      homepage="http://sceneparsing.csail.mit.edu/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual = os.fspath(dl_manager.manual_dir) if dl_manager.manual_dir else ""
    if manual and os.path.isdir(os.path.join(manual, FOLDER)):
      root = manual
    elif manual and os.path.exists(os.path.join(manual, f"{FOLDER}.zip")):
      root = os.fspath(dl_manager.extract(os.path.join(manual, f"{FOLDER}.zip")))
    else:
      root = os.fspath(dl_manager.download_and_extract(URL))
    root = os.path.join(root, FOLDER)
    return {
      "train": self._generate_examples(root, "training"),
      "validation": self._generate_examples(root, "validation"),
    }

  def _generate_examples(self, root: str, part: str):
    images = os.path.join(root, "images", part)
    if not os.path.isdir(images):
      raise errors.MissingInput(f"ade20k: {images} is missing")
    for name in sorted(os.listdir(images)):
      stem, ext = os.path.splitext(name)
      if ext.lower() != ".jpg":
        continue
      mask = common.read_index_png(os.path.join(root, "annotations", part, f"{stem}.png"))
      yield (
        stem,
        {
          "image": os.path.join(images, name),
          "segmentation_mask": mask[..., None],
          "file_name": stem,
        },
      )
