"""A small version of `tests/fault_injection.py`: a run killed (kill -9, also
during start-up and during asynchronous saves) and stopped by SIGTERM, resumed
each time, logs exactly the losses of an uninterrupted run."""

import pytest

from tests import fault_injection


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(data_dir, tmp_path):
  summary = fault_injection.run(
    kills=3, steps=18, seed=0, data_dir=data_dir, workdir=str(tmp_path), timeout=400
  )
  assert summary["kills"] == 3, summary
  assert summary["steps_compared"] == summary["steps_expected"] == 18
  assert summary["max_loss_difference"] == 0.0, summary
  assert summary["sigterm_exit_codes"] == [0], summary
  assert fault_injection.ok(summary)
