"""Several hosts and changing topologies: 2 processes x 2 CPU devices (gloo)
against one process, and one run carried across 2x2, 8 (FSDP) and 1 devices."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from jaxseg.parallel import distributed
from jaxseg.training import loop
from tests.helpers import ROOT, logged_losses, tiny_config

# One process of a run: joins the others (if any) through the JAX_* variables,
# trains until `stop_at`, and reports the train state's bytes per device.
_PROCESS = """
import json, sys
import jaxseg
jaxseg.set_xla_flags()
from jaxseg.parallel import distributed
distributed.initialize()
import jax
from jaxseg.parallel import sharding
from jaxseg.training import loop
from jaxseg.training import state as train_state
from tests.parallel.test_distributed import config_for
args = json.loads(sys.argv[1])
config = config_for(args["data_dir"], args["fsdp"])
assert jax.device_count() == args["devices"], jax.devices()
mesh = sharding.make_mesh(config)
_, _, _, abstract, shardings = train_state.build(config, 5, mesh)
replicated = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
result = loop.train_and_evaluate(config, args["workdir"], stop_at_step=args["stop_at"])
restored_onto = []
if args.get("restore_onto"):  # The checkpoint just written, onto meshes of fewer devices.
  import numpy as np
  from jaxseg.training import checkpoint
  ckpt = checkpoint.for_run(args["workdir"], config)
  step = ckpt.latest_step()
  here = ckpt.restore(step, checkpoint.abstract_with_shardings(abstract, shardings))
  for n in args["restore_onto"]:
    small = jax.sharding.Mesh(np.array(jax.devices()[:n]), (sharding.DATA_AXIS,))
    _, _, _, abstract_n, shardings_n = train_state.build(config, 5, small)
    there = ckpt.restore(step, checkpoint.abstract_with_shardings(abstract_n, shardings_n))
    for a, b in zip(jax.tree.leaves(here), jax.tree.leaves(there), strict=True):
      assert len(b.sharding.device_set) == n
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    restored_onto.append(n)
  ckpt.close()
if jax.process_index() == 0:
  print("RESULT " + json.dumps({
    "processes": jax.process_count(),
    "state_bytes": sharding.bytes_per_device(abstract, shardings),
    "replicated_bytes": sharding.bytes_per_device(abstract, replicated),
    "miou": result.get("miou"),
    "restored_onto": restored_onto,
  }))
"""


def config_for(data_dir: str, fsdp: bool = False):
  return tiny_config(
    data_dir,
    num_train_steps=6,
    eval_every_steps=2,
    checkpoint_every_steps=100,
    num_pictures=2,
    **{"mesh.fsdp": fsdp, "mesh.fsdp_min_size": 0},
  )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(
  data_dir, workdir, *, devices, processes=1, stop_at=None, fsdp=False, restore_onto=()
) -> dict:
  """Runs `processes` processes of `devices // processes` CPU devices each."""
  args = {
    "data_dir": data_dir,
    "workdir": workdir,
    "devices": devices,
    "stop_at": stop_at,
    "fsdp": fsdp,
    "restore_onto": list(restore_onto),
  }
  env = dict(os.environ, PYTHONPATH=ROOT)
  count = f"--xla_force_host_platform_device_count={devices // processes}"
  env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {count}"
  if processes > 1:
    env.update(
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES=str(processes)
    )
  logs = [open(f"{workdir}-{devices}x{processes}-{p}.log", "w+") for p in range(processes)]
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _PROCESS, json.dumps(args)],
      cwd=ROOT,
      env=dict(env, JAX_PROCESS_ID=str(p)) if processes > 1 else env,
      stdout=logs[p],
      stderr=subprocess.STDOUT,
      text=True,
    )
    for p in range(processes)
  ]
  outputs = []
  for p, log in zip(procs, logs, strict=True):
    p.wait(timeout=600)
    log.seek(0)
    outputs.append(log.read())
    log.close()
    assert p.returncode == 0, outputs[-1][-4000:]
  line = next(x for x in outputs[0].splitlines() if x.startswith("RESULT "))
  return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_one_run_carried_across_hosts_and_device_counts(data_dir, tmp_path):
  reference = str(tmp_path / "one_device")
  expected = loop.train_and_evaluate(config_for(data_dir), reference)

  # Two processes of two devices equal one process of four, step for step.
  four = str(tmp_path / "four")
  _run(data_dir, four, devices=4, stop_at=2)
  carried = str(tmp_path / "carried")
  hosts = _run(data_dir, carried, devices=4, processes=2, stop_at=2)
  assert hosts["processes"] == 2
  assert sorted(logged_losses(carried)) == [1, 2]
  for step, loss in logged_losses(four).items():
    assert logged_losses(carried)[step] == pytest.approx(loss, rel=1e-6)

  # The sharded checkpoint the two hosts wrote resumes on 8 devices with FSDP,
  # which holds about 1/8 of the state per device; what it saves restores
  # exactly onto 1, 2 and 4 devices ...
  fsdp = _run(data_dir, carried, devices=8, stop_at=4, fsdp=True, restore_onto=(1, 2, 4))
  assert fsdp["state_bytes"] < fsdp["replicated_bytes"] / 6
  assert fsdp["restored_onto"] == [1, 2, 4]

  # ... whose checkpoint resumes on one device, to the end.
  final = _run(data_dir, carried, devices=1)
  losses, reference_losses = logged_losses(carried), logged_losses(reference)
  assert sorted(losses) == sorted(reference_losses) == [1, 2, 3, 4, 5, 6]
  for step, loss in reference_losses.items():
    assert losses[step] == pytest.approx(loss, rel=1e-4), step
  assert final["miou"] == pytest.approx(expected["miou"], abs=1e-3)


def test_initialize_joins_only_when_the_launch_names_several_processes(monkeypatch):
  calls = []

  def initialize(**kw):
    calls.append(kw)
    if not kw:  # What JAX says when nothing is given and it finds no cluster.
      raise ValueError("coordinator_address should be defined.")

  monkeypatch.setattr(distributed.jax.distributed, "initialize", initialize)
  monkeypatch.setattr(distributed.jax.config, "update", lambda *a: calls.append(a))
  for variable in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(variable, raising=False)
  gloo = ("jax_cpu_collectives_implementation", "gloo")
  previous = ("jax_cpu_collectives_implementation", distributed.jax.config.values[gloo[0]])
  assert not distributed.initialize()  # A laptop: nothing to join, the setting put back.
  assert calls == [gloo, {}, previous]
  calls.clear()
  assert not distributed.initialize(num_processes=1) and not calls
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  assert distributed.initialize(process_id=1)
  assert calls == [
    gloo,
    {"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1},
  ]
  calls.clear()

  def refuse(**kw):
    raise ValueError("cannot reach the coordinator")

  monkeypatch.setattr(distributed.jax.distributed, "initialize", refuse)
  with pytest.raises(ValueError, match="cannot reach"):  # Explicit settings: errors come through.
    distributed.initialize(process_id=1)


def _wait_for(condition) -> None:
  for _ in range(100):
    if condition():
      return
    time.sleep(0.01)


def test_first_signal_requests_a_stop_and_a_second_ctrl_c_interrupts():
  before = signal.getsignal(signal.SIGTERM)
  stop = distributed.StopRequest()
  stop.install()
  try:
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    _wait_for(lambda: stop.requested)
    assert stop.signal_name == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
      _wait_for(lambda: False)
  finally:
    stop.uninstall()
  assert signal.getsignal(signal.SIGTERM) is before
