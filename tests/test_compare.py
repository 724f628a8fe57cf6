"""`python -m jaxseg.compare`: several configs on one budget, side by side."""

import json
import os
import shutil

import pytest

from jaxseg import compare
from jaxseg.scoring import tables
from tests.helpers import run_command


def test_comparison_table_has_a_column_per_run():
  a = {"iou": {"bg": 0.9, "cat": 0.5}, "miou": 0.7, "macc": 0.8, "aacc": 0.95}
  b = {"iou": {"bg": 0.95, "cat": None}, "miou": 0.95, "macc": 0.9, "aacc": 0.97}
  table = tables.format_comparison(["fcn32s", "fcn8s"], [a, b])
  lines = table.splitlines()
  assert lines[0].split() == ["fcn32s", "fcn8s"]
  assert lines[3].split() == ["cat", "50.00", "n/a"]
  assert lines[-3].split() == ["mIoU", "70.00", "95.00"]
  # With boundary scores: the mean Boundary IoU and one trimap row per width.
  for record, (biou, near) in zip((a, b), ((0.4, 0.3), (0.6, None)), strict=True):
    record.update(mbiou=biou, trimap=[{"width": 1, "miou": near, "aacc": 0.5}])
  lines = tables.format_comparison(["fcn32s", "fcn8s"], [a, b]).splitlines()
  assert lines[-2].split() == ["mBIoU", "40.00", "60.00"]
  assert lines[-1].split() == ["mIoU", "≤1px", "30.00", "n/a"]


@pytest.mark.slow
def test_compare_reports_every_config_with_the_same_overrides(trained_run, tmp_path):
  # Two finished runs of the tiny config (one per config name); compare
  # resumes each, finds it finished and evaluates it, then tabulates both.
  workdir, result = trained_run
  for name in ("default", "psp"):
    shutil.copytree(workdir, tmp_path / name)
  out = run_command(
    "jaxseg.compare",
    "--config=configs/default.py",
    "--config=configs/psp.py",
    f"--workdir={tmp_path}",
    *_tiny_overrides(workdir),
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Final validation results" in out.stdout
  with open(tmp_path / "comparison.json") as f:
    results = json.load(f)
  assert set(results) == {"default", "psp"}
  for name in results:
    assert results[name]["miou"] == pytest.approx(result["miou"], abs=1e-6)
    with open(tmp_path / name / "config.json") as f:
      config = json.load(f)
    assert config["model"]["backbone_width"] == 8 and config["num_pictures"] == 0
  assert os.path.exists(tmp_path / "comparison.png")
  assert "mBIoU" in out.stdout and "mIoU ≤32px" in out.stdout
  assert os.path.exists(tmp_path / "trimap.png")


def test_variants_train_one_config_with_their_own_overrides(trained_run, tmp_path):
  # Finished runs copied in (a resumed run may change only fields such as
  # logging, so the variants differ in those).
  workdir, _ = trained_run
  for name in ("plain", "quiet"):
    shutil.copytree(workdir, tmp_path / name)
  out = run_command(
    "jaxseg.compare",
    "--config=configs/default.py",
    f"--workdir={tmp_path}",
    "--variant=plain",
    "--variant=quiet: --config.log_every_steps=3 --config.eval_batch_size=4",
    *_tiny_overrides(workdir),
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "comparison.json") as f:
    assert list(json.load(f)) == ["plain", "quiet"]
  configs = {n: json.loads((tmp_path / n / "config.json").read_text()) for n in ("plain", "quiet")}
  # Each variant's overrides are its own; the shared ones reach both.
  assert (configs["quiet"]["log_every_steps"], configs["quiet"]["eval_batch_size"]) == (3, 4)
  assert (configs["plain"]["log_every_steps"], configs["plain"]["eval_batch_size"]) == (100, 8)
  assert configs["plain"]["num_pictures"] == configs["quiet"]["num_pictures"] == 0


def test_a_variant_is_name_colon_overrides():
  assert compare.parse_variant("ce") == ("ce", [])
  assert compare.parse_variant("ce+dice: --config.loss.terms.dice=1 --config.seed=2") == (
    "ce+dice",
    ["--config.loss.terms.dice=1", "--config.seed=2"],
  )
  for bad in ("a/b: --config.seed=1", ": --config.seed=1", "x: seed=1"):
    with pytest.raises(ValueError, match=r"NAME: --config\.KEY=VALUE"):
      compare.parse_variant(bad)


def _tiny_overrides(workdir):
  """The trained_run's tiny settings as command-line overrides."""
  with open(os.path.join(workdir, "config.json")) as f:
    trained = json.load(f)
  return [
    f"--config.data.data_dir={trained['data']['data_dir']}",
    "--config.data.variant=tiny",
    "--config.model.backbone_width=8",
    "--config.model.head_channels=16",
    "--config.model.aux_channels=8",
    "--config.crop_size=64,64",
    "--config.batch_size=8",
    "--config.eval_batch_size=8",
    "--config.num_train_steps=4",
    "--config.warmup_steps=1",
    "--config.num_pictures=0",
  ]
