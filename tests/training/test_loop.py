"""End-to-end: train, evaluate, checkpoint, resume, and the same result on 8 devices."""

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from jaxseg.training import loop, progress, runs
from tests.helpers import logged_losses, tiny_config


def test_end_to_end_run_writes_what_the_readme_promises(trained_run, data_dir, tmp_path):
  # The session's tiny run (tiny_config, trained once for the tests that need a run).
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_run[0], workdir)
  result = trained_run[1]
  assert result["step"] == 4 and 0.0 <= result["miou"] <= 1.0
  with open(os.path.join(workdir, "metrics.json")) as f:
    saved = json.load(f)
  assert saved["latest"]["step"] == 4 and saved["best"]["miou"] == pytest.approx(
    result["miou"], abs=1e-6
  )
  assert set(saved["latest"]["iou"]) == {"background", "circle", "square", "triangle", "star"}
  assert os.path.exists(os.path.join(workdir, "config.json"))
  # Four validation examples as image | truth | prediction rows of 64x64 panels.
  with Image.open(os.path.join(workdir, "predictions.png")) as picture:
    assert picture.size == (2 + 3 * 66, 2 + 4 * 66)
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert sorted(logged_losses(workdir)) == [1, 2, 3, 4]
  steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert steps[-1] == 4

  # Started again, a finished run does not train again; it reports its result.
  again = loop.train_and_evaluate(tiny_config(data_dir), workdir)
  assert again["step"] == 4 and again["miou"] == pytest.approx(result["miou"])
  assert sorted(logged_losses(workdir)) == [1, 2, 3, 4]


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_uninterrupted_run(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=6, checkpoint_every_steps=100)
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  loop.train_and_evaluate(config, straight)
  first = loop.train_and_evaluate(config, resumed, stop_at_step=3)
  assert first["step"] == 3
  loop.train_and_evaluate(config, resumed)

  assert logged_losses(straight) == logged_losses(resumed)
  assert sorted(logged_losses(resumed)) == [1, 2, 3, 4, 5, 6]
  _, a = runs.load_train_state(config, straight)
  _, b = runs.load_train_state(config, resumed)
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_without_saving_it(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir, learning_rate=1e30, num_train_steps=8, checkpoint_every_steps=1)
  with pytest.raises(loop.NonFiniteLossError, match=r"at step (\d+)") as info:
    loop.train_and_evaluate(config, workdir)
  message = str(info.value)
  bad_step = int(re.search(r"at step (\d+)", message).group(1))
  assert "Likely cause: learning rate" in message and "lower config.learning_rate" in message
  assert "\n" not in message
  saved = [int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
  assert saved and all(s < bad_step for s in saved)


@pytest.mark.slow
def test_skip_nonfinite_steps_keeps_the_state_and_counts_them(data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir, learning_rate=1e30, num_train_steps=6, checkpoint_every_steps=1,
                       eval_every_steps=6, skip_nonfinite_steps=True)  # fmt: skip
  result = loop.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  skipped = int(re.search(r"(\d+) steps with a non-finite loss or gradient skipped", out).group(1))
  assert 1 <= skipped <= 5 and result["step"] == 6
  _, state = runs.load_train_state(config, workdir, 6)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_a_non_finite_step_names_its_likely_cause():
  guard = progress.FiniteGuard(tiny_config("", dtype="bfloat16"), enabled=False)
  metrics = {"loss": np.float32("nan"), "grad_norm": np.float32("nan"), "learning_rate": 0.5,
             "nonfinite": np.float32(1), "finite_input": np.bool_(True)}  # fmt: skip
  with pytest.raises(progress.NonFiniteLossError) as info:
    guard.check(7, metrics)
  message = str(info.value)
  assert message.startswith("loss nan at step 7; stopped without saving that state")
  assert "learning rate 0.5 at this step" in message and "config.dtype=bfloat16" in message
  metrics.update(loss=np.float32(2.0), grad_norm=np.float32("inf"), finite_input=np.bool_(False))
  message = guard.describe(8, metrics)
  assert message.startswith("gradient norm inf (loss 2.0) at step 8")
  assert "NaN or infinite pixel values" in message
  guard.check(7, {**metrics, "nonfinite": np.float32(1)})  # A step is checked once.
