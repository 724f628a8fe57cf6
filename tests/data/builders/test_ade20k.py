"""ADE20K from its release directory: the 150 classes with 0 ignored."""

import numpy as np
from PIL import Image

from tests.helpers import SIZES, dataset_config, eval_labels_by_name, random_image


def test_ade20k_reduces_the_zero_label(tmp_path):
  rng = np.random.default_rng(7)
  root = tmp_path / "manual" / "ADEChallengeData2016"
  written = {}
  for part in ("training", "validation"):
    (root / "images" / part).mkdir(parents=True)
    (root / "annotations" / part).mkdir(parents=True)
    for i, (h, w) in enumerate(SIZES[:3]):
      stem = f"ADE_{part[:5]}_{i:08d}"
      Image.fromarray(random_image(rng, h, w)).save(root / "images" / part / f"{stem}.jpg")
      mask = rng.integers(0, 151, size=(h, w)).astype(np.uint8)
      Image.fromarray(mask).save(root / "annotations" / part / f"{stem}.png")
      written[stem] = mask
  config = dataset_config(str(tmp_path / "data"), "ade20k", manual_dir=str(tmp_path / "manual"))
  spec, _, val = eval_labels_by_name(config)
  assert spec.num_classes == 150
  raw = written["ADE_valid_00000000"].astype(np.int32)
  np.testing.assert_array_equal(val["ADE_valid_00000000"], np.where(raw == 0, 255, raw - 1))
