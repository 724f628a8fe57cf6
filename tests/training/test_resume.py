"""A resumed run is the experiment its checkpoints hold; a refused resume
leaves the workdir exactly as it was."""

import hashlib
import json
import os

import pytest

from jaxseg.training import loop, runs
from tests.helpers import run_command, run_module, tiny_config


def _snapshot(workdir) -> dict[str, str]:
  """Every file under `workdir` and the hash of its bytes."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture
def two_step_run(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir, num_train_steps=2, eval_every_steps=2, num_pictures=0)
  loop.train_and_evaluate(config, workdir)
  return workdir, config


@pytest.mark.slow
def test_a_changed_model_is_refused_and_nothing_is_written(two_step_run):
  workdir, config = two_step_run
  before = _snapshot(workdir)
  changed = config.copy_and_resolve_references()
  changed.model.backbone_width = 16
  changed.learning_rate = 0.05
  with pytest.raises(runs.ResumeRefusedError) as error:
    loop.train_and_evaluate(changed, workdir)
  message = str(error.value)
  assert "learning_rate 0.1 -> 0.05" in message and "model.backbone_width 8 -> 16" in message
  assert f"--config.init_from={workdir}" in message and "\n" not in message
  assert _snapshot(workdir) == before
  # predict/evaluate still read the run.
  assert runs.load_run_config(workdir).model.backbone_width == 8


def test_a_checkpoint_that_does_not_fit_is_refused_without_a_config_json(two_step_run):
  # A run from before config.json was written: the checkpoint's shapes decide.
  workdir, config = two_step_run
  os.remove(os.path.join(workdir, "config.json"))
  before = _snapshot(workdir)
  changed = config.copy_and_resolve_references()
  changed.model.head_channels = 24
  with pytest.raises(runs.ResumeRefusedError, match=r"does not fit this config's model \(params/"):
    loop.train_and_evaluate(changed, workdir)
  assert _snapshot(workdir) == before


@pytest.mark.slow
def test_steps_and_cadence_may_change_and_are_recorded(two_step_run):
  workdir, config = two_step_run
  longer = config.copy_and_resolve_references()
  longer.num_train_steps = 3
  longer.eval_every_steps = 3
  result = loop.train_and_evaluate(longer, workdir)
  assert result["step"] == 3
  with open(os.path.join(workdir, "resumes.jsonl")) as f:
    record = json.loads(f.read().splitlines()[-1])
  assert record["changed"] == {"eval_every_steps": [2, 3], "num_train_steps": [2, 3]}
  assert runs.load_run_config(workdir).num_train_steps == 3


def _tiny_flags(workdir):
  with open(os.path.join(workdir, "config.json")) as f:
    data_dir = json.load(f)["data"]["data_dir"]
  return [
    f"--workdir={workdir}", "--config=configs/default.py", "--config.data.variant=tiny",
    f"--config.data.data_dir={data_dir}", "--config.model.backbone_width=8",
    "--config.model.head_channels=16", "--config.model.aux_channels=8",
    "--config.batch_size=8", "--config.eval_batch_size=8", "--config.num_train_steps=2",
    "--config.num_pictures=0", "--config.warmup_steps=1",
  ]  # fmt: skip


@pytest.mark.slow
def test_user_errors_end_in_one_line_and_status_2(two_step_run, tmp_path):
  workdir, _ = two_step_run
  before = _snapshot(workdir)
  cases = {
    "--config.learning_rate=0.5": "error: --workdir=",  # A refused resume.
    "--config.loss.terms.cross_entropy=0": "error: config.loss.terms: every weight is 0",
    "--config.crop_size=-8,64": "error: config.crop_size=(-8, 64) must be (height, width)",
  }
  for flag, start in cases.items():
    out = run_command("jaxseg.main", *_tiny_flags(workdir), flag)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith(start), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
  assert _snapshot(workdir) == before
  missing = run_command("jaxseg.evaluate", f"--workdir={tmp_path / 'nothing'}")
  assert missing.returncode == 2 and "config.json is missing" in missing.stderr
  assert missing.stderr.strip().splitlines()[-1].startswith("error: ")
  # The debug switch shows where it came from.
  env = {"JAXSEG_TRACEBACK": "1"}
  traced = run_module("jaxseg.evaluate", f"--workdir={tmp_path / 'nothing'}", env=env)
  assert traced.returncode != 0 and "Traceback" in traced.stderr
