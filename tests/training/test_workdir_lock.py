"""One live process per workdir: a second training or evaluate stops at once
naming the holder; a holder killed with -9 does not block the next start."""

import os
import signal
import subprocess
import sys

import pytest

from jaxseg.training import lock, loop
from tests.helpers import ROOT, run_command, tiny_config

HOLDER = """
import sys, time
from jaxseg.training import lock
held = lock.hold(sys.argv[1], "training")
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held_by_another_process(tmp_path):
  workdir = str(tmp_path / "run")
  env = {**os.environ, "PYTHONPATH": ROOT}
  holder = subprocess.Popen(
    [sys.executable, "-c", HOLDER, workdir], stdout=subprocess.PIPE, text=True, env=env
  )
  assert holder.stdout.readline().strip() == "held"
  yield workdir, holder
  holder.kill()
  holder.wait()


def test_a_second_process_is_refused_naming_the_holder(held_by_another_process, data_dir):
  workdir, holder = held_by_another_process
  with pytest.raises(lock.WorkdirBusy, match=rf"is in use by process {holder.pid} on .*training"):
    loop.train_and_evaluate(tiny_config(data_dir), workdir)
  assert os.listdir(workdir) == [lock.LOCK_FILE]  # Nothing written: no config.json.
  done = run_command("jaxseg.evaluate", f"--workdir={workdir}")
  assert done.returncode == 2
  assert done.stderr.startswith(f"error: --workdir={workdir} is in use by process {holder.pid}")


def test_a_lock_left_by_a_killed_process_does_not_block(held_by_another_process):
  workdir, holder = held_by_another_process
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with lock.hold(workdir, "training"):
    with open(os.path.join(workdir, lock.LOCK_FILE)) as f:
      assert f.read().startswith(f"process {os.getpid()} ")
    with pytest.raises(lock.WorkdirBusy):  # Held now, by this process.
      lock.hold(workdir, "evaluate")
  with open(os.path.join(workdir, lock.LOCK_FILE)) as f:
    assert f.read() == ""  # Released: empty.
  lock.hold(workdir, "evaluate").release()


# One process of a two-host run trying the workdir (gloo over loopback).
HOST = """
import sys
from jaxseg.parallel import distributed
distributed.initialize()
from jaxseg.training import lock
try:
  lock.hold(sys.argv[1], "training")
  print("held")
except lock.WorkdirBusy as e:
  print(f"refused: {e}")
"""


@pytest.mark.slow
def test_every_host_of_a_run_is_refused_when_process_0_is(held_by_another_process):
  """Only process 0 takes the lock; the other hosts learn that it was refused
  and stop too, instead of waiting for it at the run's first collective."""
  from tests.parallel.test_distributed import _free_port

  workdir, holder = held_by_another_process
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_NUM_PROCESSES": "2",
         "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}"}  # fmt: skip
  hosts = [
    subprocess.Popen(
      [sys.executable, "-c", HOST, workdir],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      env={**env, "JAX_PROCESS_ID": str(p)},
    )
    for p in range(2)
  ]
  outputs = [host.communicate(timeout=300)[0] for host in hosts]
  assert f"refused: --workdir={workdir} is in use by process {holder.pid}" in outputs[0]
  assert "refused: " in outputs[1] and "process 0 was refused" in outputs[1], outputs[1][-2000:]
