"""Shared fixtures: a tiny embedded dataset built once per session, tiny configs."""

import os
import shutil
import tempfile

# Many tests, and the processes they start, compile the same tiny programs:
# they share one compilation cache, new for each session so that nothing
# carries over from an earlier version of the code.
_XLA_CACHE = tempfile.mkdtemp(prefix="jaxseg-tests-xla-cache-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import pytest  # noqa: E402

import jaxseg  # noqa: E402

jaxseg.set_xla_flags()  # As the command lines do, before JAX's first computation.

from jaxseg.data.builders import synthetic_shapes  # noqa: E402
from jaxseg.training import loop  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir holding `synthetic_shapes/tiny` (64×64, 48 train / 20 val)."""
  path = tmp_path_factory.mktemp("tfds")
  builder = synthetic_shapes.SyntheticShapes(config="tiny", data_dir=str(path))
  builder.download_and_prepare(file_format="array_record")
  return str(path)


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory) -> tuple[str, dict]:
  """`(workdir, final metrics)` of a tiny run (4 steps, checkpoints at 2 and 4)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  return workdir, loop.train_and_evaluate(tiny_config(data_dir), workdir)


def pytest_sessionfinish(session, exitstatus):
  shutil.rmtree(_XLA_CACHE, ignore_errors=True)
