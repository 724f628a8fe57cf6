"""A run whose newest checkpoint was damaged (a file truncated or deleted, as a
full disk or a copy cut short leaves it) goes on from the newest one that
reads; the damaged one is named and kept, moved aside."""

import os
import shutil
import subprocess
import sys

import pytest

from jaxseg.training import checkpoint, loop, runs
from tests.helpers import ROOT, tiny_config, tiny_flags


def _copy(trained_run, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_run[0], workdir)
  return workdir


def _largest_file(directory: str) -> str:
  files = [os.path.join(r, f) for r, _, names in os.walk(directory) for f in names]
  return max(files, key=os.path.getsize)


def _truncate(path: str) -> None:
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


DAMAGES = {
  "array data truncated": lambda state: _truncate(_largest_file(state)),
  "metadata truncated": lambda state: _truncate(os.path.join(state, "_METADATA")),
  "manifest deleted": lambda state: os.remove(os.path.join(state, "manifest.ocdbt")),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_training_resumes_from_the_newest_checkpoint_that_reads(
  damage, trained_run, data_dir, tmp_path, capsys
):
  workdir = _copy(trained_run, tmp_path)
  checkpoints = os.path.join(workdir, "checkpoints")
  DAMAGES[damage](os.path.join(checkpoints, "4", "state"))
  result = loop.train_and_evaluate(tiny_config(data_dir), workdir)
  captured = capsys.readouterr()
  assert "warning: checkpoint step 4 is damaged (" in captured.err
  assert f"moved aside to {checkpoints}/4.damaged" in captured.err
  assert "Resuming from step 2" in captured.out
  assert os.path.isdir(os.path.join(checkpoints, "4.damaged"))  # Kept, not deleted.
  assert checkpoint.saved_steps(workdir) == [2, 4]  # Step 4 saved again.
  # Steps 3 and 4 again from step 2: the same run as the uninterrupted one.
  assert result["miou"] == trained_run[1]["miou"] and result["step"] == 4


@pytest.mark.slow
def test_no_readable_checkpoint_is_one_error_line(trained_run, data_dir, tmp_path):
  workdir = _copy(trained_run, tmp_path)
  for step in (2, 4):
    _truncate(_largest_file(os.path.join(workdir, "checkpoints", str(step), "state")))
  command = [sys.executable, "-m", "jaxseg.main", f"--workdir={workdir}", *tiny_flags(data_dir)]
  done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 2, done.stderr
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "no checkpoint in" in errors[0], done.stderr
  assert "steps 4, 2 were damaged" in errors[0] and "Traceback" not in done.stderr
  for step in (2, 4):  # Kept.
    assert os.path.isdir(os.path.join(workdir, "checkpoints", f"{step}.damaged"))


def test_inference_uses_the_newest_checkpoint_that_reads(trained_run, tmp_path, capsys):
  workdir = _copy(trained_run, tmp_path)
  state = os.path.join(workdir, "checkpoints", "4", "state")
  os.remove(os.path.join(state, "manifest.ocdbt"))
  config = runs.load_run_config(workdir)
  step, _, variables = runs.load_readable_variables(config, workdir, "latest")
  assert step == 2 and "params" in variables
  err = capsys.readouterr().err
  assert f"warning: checkpoint {os.path.dirname(state)} is damaged (" in err
  assert os.path.isdir(state)  # Left in place: inference only reads.
  with pytest.raises(checkpoint.DamagedCheckpoint, match=r"checkpoints/4 is damaged"):
    runs.load_readable_variables(config, workdir, "4")
