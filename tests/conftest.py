"""Shared fixtures: a tiny embedded dataset built once per session, tiny configs.

The suite runs in parallel (pytest-xdist, `-n auto` in pyproject.toml). This
file is read by the controlling process before it starts the workers, so what
it puts in the environment here reaches every worker and every process a test
starts.
"""

import os
import shutil
import tempfile

# Many tests, and the processes they start, compile the same tiny programs:
# they share one compilation cache, made by the controlling process (the
# workers inherit it), new for each session so that nothing carries over from
# an earlier version of the code.
if "JAXSEG_TEST_XLA_CACHE" not in os.environ:
  os.environ["JAXSEG_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="jaxseg-tests-xla-cache-")
  _OWNS_CACHE = True
else:
  _OWNS_CACHE = False
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["JAXSEG_TEST_XLA_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
# The tests' programs are tiny and run a few times each: compiling is most of
# their time. Without LLVM's optimisation passes and with XLA:CPU's older
# elemental emitters instead of its fusion emitters, a train step compiles
# about 3x faster (5.1 -> 1.4 s for the tiny PSPNet) and runs 1.7x slower
# (18 -> 31 ms); what is computed is the same (float rounding aside). Users'
# runs keep XLA's defaults.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
for _flag in TEST_XLA_FLAGS:
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

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


def pytest_collection_modifyitems(config, items):
  """The slow tests first, so that the workers start on them and end with the
  quick ones (no long test left for the end while the other workers idle)."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session, exitstatus):
  if _OWNS_CACHE and not hasattr(session.config, "workerinput"):  # The controller, last.
    shutil.rmtree(os.environ["JAXSEG_TEST_XLA_CACHE"], ignore_errors=True)
