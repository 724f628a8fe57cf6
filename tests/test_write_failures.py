"""A write that fails for lack of space (here a file-size limit, which fails
writes as a full disk does) ends the command with one `error:` line naming
the path; what was written before stays intact."""

import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from jaxseg.training import checkpoint, runs
from tests.helpers import ROOT, tiny_flags

LIMITED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Writes past the limit fail with EFBIG.
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _run_limited(limit: int, module: str, *args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": ROOT}
  command = [sys.executable, "-c", LIMITED, str(limit), module, *args]
  return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _one_error_line(done) -> str:
  assert done.returncode == 2, done.stderr[-3000:]
  lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  return lines[0]


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_last_stays(
  trained_run, data_dir, tmp_path
):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_run[0], workdir)
  # Steps 5 and 6 on top of the finished 4 steps; the checkpoint's arrays do
  # not fit under 64 KiB.
  flags = tiny_flags(data_dir, num_train_steps=6, eval_every_steps=6, checkpoint_every_steps=6)
  done = _run_limited(64 * 1024, "jaxseg.main", f"--workdir={workdir}", *flags)
  line = _one_error_line(done)
  assert f"could not write checkpoint step 6 to {workdir}/checkpoints/6" in line
  assert "checkpoints saved before it are intact" in line
  assert checkpoint.saved_steps(workdir) == [2, 4]
  config = runs.load_run_config(workdir)
  assert runs.load_readable_variables(config, workdir, "latest")[0] == 4


def test_a_prediction_that_cannot_be_written_is_one_line(trained_run, tmp_path):
  noise = np.random.default_rng(0).integers(0, 256, (400, 500, 3), np.uint8)
  Image.fromarray(noise).save(tmp_path / "noise.png")  # Its overlay JPEG exceeds 64 KiB.
  out = tmp_path / "out"
  done = _run_limited(64 * 1024, "jaxseg.predict", f"--workdir={trained_run[0]}",
                      f"--input={tmp_path / 'noise.png'}", f"--output={out}")  # fmt: skip
  line = _one_error_line(done)
  assert line.startswith(f"error: could not write {out}/noise_overlay.jpg: File too large")
  assert sorted(os.listdir(out)) == ["noise.png"]  # The label PNG; no partial file left.
