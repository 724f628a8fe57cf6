"""`python -m jaxseg.compare`: several configs on one budget, side by side."""

import json
import os

from jaxseg import compare
from tests.helpers import run_module


def test_comparison_table_has_a_column_per_run():
  a = {"iou": {"bg": 0.9, "cat": 0.5}, "miou": 0.7, "macc": 0.8, "aacc": 0.95}
  b = {"iou": {"bg": 0.95, "cat": None}, "miou": 0.95, "macc": 0.9, "aacc": 0.97}
  table = compare.format_comparison(["fcn32s", "fcn8s"], [a, b])
  lines = table.splitlines()
  assert lines[0].split() == ["fcn32s", "fcn8s"]
  assert lines[3].split() == ["cat", "50.00", "n/a"]
  assert lines[-3].split() == ["mIoU", "70.00", "95.00"]


def test_compare_trains_every_config_with_the_same_overrides(data_dir, tmp_path):
  tiny = [
    f"--config.data.data_dir={data_dir}",
    "--config.data.variant=tiny",
    "--config.num_train_steps=1",
    "--config.eval_every_steps=1",
    "--config.batch_size=4",
    "--config.crop_size=32,32",
    "--config.num_pictures=0",
  ]
  out = run_module(
    "jaxseg.compare",
    "--config=configs/default.py",
    "--config=configs/unet.py",
    f"--workdir={tmp_path}",
    *tiny,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Final validation results" in out.stdout
  with open(tmp_path / "comparison.json") as f:
    results = json.load(f)
  assert set(results) == {"default", "unet"}
  for name in results:
    with open(tmp_path / name / "config.json") as f:
      config = json.load(f)
    assert (config["num_train_steps"], config["batch_size"]) == (1, 4)
    assert config["crop_size"] == [32, 32]
  assert os.path.exists(tmp_path / "comparison.png")
