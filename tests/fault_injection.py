"""Kills a training run at random moments, resumes it each time, and compares
its per-step losses with an uninterrupted run of the same config.

    python tests/fault_injection.py --kills=10 --steps=40 --seed=0

Both runs are `python -m jaxseg.main` on a tiny PSPNet and the tiny embedded
dataset (built into a temporary directory unless `--data_dir` has it), saving
a checkpoint (asynchronously) every step, so many kills land during a save.
Kills are `kill -9` at a random moment after a random step, `kill -9` at a
random moment of start-up (while restoring or compiling), and SIGTERM, after
which the run must save and exit 0. Prints one line per kill and a summary;
exits 1 if any loss differs or a SIGTERM did not exit cleanly.
`tests/test_fault_injection.py` runs a small version.
"""

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.helpers import logged_losses  # noqa: E402


@dataclasses.dataclass
class Kill:
  how: str  # "SIGKILL after a step", "SIGKILL during start-up" or "SIGTERM".
  after_step: int  # The last step logged before the signal.
  exit_code: int
  saving: bool  # A checkpoint was half-written when the process died.
  resumed_from: int | None = None  # The step the next start restored.


def _command(data_dir: str, workdir: str, steps: int) -> list[str]:
  overrides = {
    "data.variant": "tiny",
    "data.data_dir": data_dir,
    "model.backbone_width": 8,
    "model.head_channels": 16,
    "model.aux_channels": 8,
    "batch_size": 8,
    "eval_batch_size": 8,
    "num_train_steps": steps,
    "warmup_steps": 1,
    "log_every_steps": 1,
    "eval_every_steps": steps,
    "checkpoint_every_steps": 1,
    "keep_checkpoints": 2,
    "num_pictures": 0,
  }
  return [
    sys.executable,
    "-m",
    "jaxseg.main",
    "--config=configs/default.py",
    f"--workdir={workdir}",
    *(f"--config.{k}={v}" for k, v in overrides.items()),
  ]


def _start(data_dir: str, workdir: str, steps: int, log_path: str) -> subprocess.Popen:
  log = open(log_path, "a")
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=1"
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=flags)
  return subprocess.Popen(
    _command(data_dir, workdir, steps), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
  )


def losses(workdir: str) -> dict[int, float]:
  """Per-step training loss; the latest record of a step logged twice."""
  if not os.path.exists(os.path.join(workdir, "scalars.jsonl")):
    return {}
  return logged_losses(workdir)


def _partial_checkpoints(workdir: str) -> list[str]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return [d for d in os.listdir(directory) if "tmp" in d]


def _resumed_from(log_path: str, offset: int) -> int | None:
  with open(log_path) as f:
    f.seek(offset)
    for line in f:
      if line.startswith("Resuming from step "):
        return int(line.split()[3])
  return None


def run(
  kills: int, steps: int, seed: int, data_dir: str, workdir: str, timeout: float = 600
) -> dict:
  """Runs the experiment; returns a summary (see `main`)."""
  rng = random.Random(seed)
  deadline = time.monotonic() + timeout
  reference, faulty = os.path.join(workdir, "reference"), os.path.join(workdir, "faulty")
  log_path = os.path.join(workdir, "faulty.log")

  straight = _start(data_dir, reference, steps, os.path.join(workdir, "reference.log"))
  if straight.wait(timeout=timeout):
    raise RuntimeError(f"the uninterrupted run failed; see {workdir}/reference.log")
  expected = losses(reference)

  record: list[Kill] = []
  for i in range(kills):
    done = max(losses(faulty), default=0)
    if done >= steps - 1 or time.monotonic() > deadline:
      break
    offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    proc = _start(data_dir, faulty, steps, log_path)
    how = ("SIGKILL after a step", "SIGTERM", "SIGKILL during start-up")[i % 3]
    if how == "SIGKILL during start-up":
      time.sleep(rng.uniform(0.5, 6.0))
    else:
      # Somewhere in this kill's share of the steps left, so that every kill happens.
      share = max(1, (steps - 1 - done) // (kills - i))
      target = done + rng.randint(1, share)
      while max(losses(faulty), default=0) < target and proc.poll() is None:
        time.sleep(0.02)
      time.sleep(rng.uniform(0.0, 0.3))  # Anywhere in the following step or save.
    if proc.poll() is not None:  # Finished (or failed) before the signal.
      break
    proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
    code = proc.wait(timeout=timeout)
    if record:
      record[-1].resumed_from = _resumed_from(log_path, offset)
    record.append(
      Kill(how, max(losses(faulty), default=0), code, bool(_partial_checkpoints(faulty)))
    )
    print(
      f"kill {len(record)}: {how:<24} after step {record[-1].after_step:>3}  "
      f"exit {code:>3}{'  (checkpoint half-written)' if record[-1].saving else ''}",
      flush=True,
    )

  offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
  final = _start(data_dir, faulty, steps, log_path)
  if final.wait(timeout=timeout):
    raise RuntimeError(f"the resumed run failed; see {log_path}")
  if record:
    record[-1].resumed_from = _resumed_from(log_path, offset)
  got = losses(faulty)
  differences = [abs(got[s] - expected[s]) for s in expected if s in got]
  return {
    "kills": len(record),
    "resumes": len(record),
    "kills_during_a_save": sum(k.saving for k in record),
    "sigterm_exit_codes": [k.exit_code for k in record if k.how == "SIGTERM"],
    "steps_compared": len(differences),
    "steps_expected": len(expected),
    "max_loss_difference": max(differences, default=float("nan")),
    "record": [dataclasses.asdict(k) for k in record],
  }


def ok(summary: dict) -> bool:
  return (
    summary["steps_compared"] == summary["steps_expected"]
    and summary["max_loss_difference"] == 0.0
    and all(code == 0 for code in summary["sigterm_exit_codes"])
  )


def _tiny_dataset(path: str) -> str:
  from jaxseg.data.builders import synthetic_shapes

  synthetic_shapes.SyntheticShapes(config="tiny", data_dir=path).download_and_prepare(
    file_format="array_record"
  )
  return path


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default="", help="holds synthetic_shapes/tiny; built if empty")
  parser.add_argument("--workdir", default="", help="default: a temporary directory")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
  args = parser.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="jaxseg-faults-")
  os.makedirs(workdir, exist_ok=True)
  data_dir = args.data_dir or _tiny_dataset(os.path.join(workdir, "tfds"))
  t0 = time.monotonic()
  summary = run(args.kills, args.steps, args.seed, data_dir, workdir, args.timeout)
  print(json.dumps({k: v for k, v in summary.items() if k != "record"}, indent=2))
  passed = ok(summary)
  print(
    f"{'PASS' if passed else 'FAIL'}: {summary['kills']} kills and resumes "
    f"({summary['kills_during_a_save']} during a save), {summary['steps_compared']} steps "
    f"compared, max loss difference {summary['max_loss_difference']}, "
    f"{time.monotonic() - t0:.0f} s; logs in {workdir}"
  )
  return 0 if passed else 1


if __name__ == "__main__":
  sys.exit(main())
