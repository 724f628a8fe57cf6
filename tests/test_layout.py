"""The house's plan: every module in its role's folder, imports running one way
(down the layers below, never in a circle), reading data loading no network,
and functions short enough to read."""

import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE = os.path.join(ROOT, "jaxseg")
# The commands a user types (python -m jaxseg.NAME) and the helpers they share.
COMMANDS = {
  "jaxseg.main",
  "jaxseg.evaluate",
  "jaxseg.predict",
  "jaxseg.compare",
  "jaxseg.convert",
  "jaxseg.video",
  "jaxseg.export.__main__",
  "jaxseg.benchmark.__main__",
}
HELPERS = {"jaxseg", "jaxseg.errors", "jaxseg.files", "jaxseg.cli", "jaxseg.config_files",
           "jaxseg.config_checks"}  # fmt: skip
# Layers, lowest first: a module imports from its own layer or lower ones.
LAYERS = [
  "helpers",
  "parallel",
  "data",
  "models",
  "scoring",
  "inference",
  "training",
  "export",
  "benchmark",
  "commands",
]
# Functions allowed past 60 lines, and why.
LONG_FUNCTIONS = {
  # The one long function (DESIGN.md): the training loop, read top to bottom
  # (train_and_evaluate holds the workdir around it).
  "jaxseg.training.loop._train",
}


def _modules() -> dict[str, str]:
  """Module name -> path, for every module of the package (the native build excluded)."""
  found = {}
  for directory, subdirs, files in os.walk(PACKAGE):
    subdirs[:] = [d for d in subdirs if d not in ("native", "__pycache__")]
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        found[module.removesuffix(".__init__")] = path
  return found


MODULES = _modules()
PACKAGES = {m for m, path in MODULES.items() if path.endswith("__init__.py")}


def _layer(module: str) -> str:
  if module in COMMANDS:
    return "commands"
  if module in HELPERS:
    return "helpers"
  return module.split(".")[1]


def _imports(module: str) -> set[str]:
  """The jaxseg modules `module` imports (anywhere in it, late imports included)."""
  path = MODULES[module]
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: `from . import x` in jaxseg/data/ is jaxseg.data.x.
        parts = package.split(".")
        base = ".".join([*parts[: len(parts) - node.level + 1], base]).rstrip(".")
      # `from package import submodule` needs the submodule, not what the package defines.
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    else:
      continue
    for name in names:
      known = name
      while known and known not in MODULES:
        known = known.rpartition(".")[0]
      if known.startswith("jaxseg") and known != module:
        found.add(known)
  return found


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_is_in_its_roles_folder_or_is_a_command_or_helper():
  loose = [m for m in MODULES if m.count(".") == 1 and m not in COMMANDS | HELPERS | PACKAGES]
  assert not loose, f"modules outside a role folder: {loose}"
  assert {_layer(m) for m in MODULES} <= set(LAYERS)


def test_imports_run_down_the_layers():
  upward = [
    f"{m} ({_layer(m)}) imports {i} ({_layer(i)})"
    for m, imported in GRAPH.items()
    for i in imported
    if LAYERS.index(_layer(i)) > LAYERS.index(_layer(m))
  ]
  assert not upward, "\n".join(upward)


def test_no_import_circle():
  state, circles = {}, []

  def visit(module, path):
    state[module] = "open"
    for other in sorted(GRAPH[module]):
      if state.get(other) == "open":
        circles.append(" -> ".join([*path[path.index(other) :], other]))
      elif other not in state:
        visit(other, [*path, other])
    state[module] = "done"

  for module in sorted(MODULES):
    if module not in state:
      visit(module, [module])
  assert not circles, "\n".join(circles)


@pytest.mark.parametrize("module", ["jaxseg.data", "jaxseg.data.pipeline", "jaxseg.data.augment"])
def test_reading_data_loads_no_network(module):
  code = (
    f"import sys, {module}; "
    "print(sorted(m for m in sys.modules if m.startswith(('jaxseg.models', 'jaxseg.training'))))"
  )
  done = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
  )
  assert done.stdout.strip() == "[]", done.stdout


def test_functions_fit_on_a_screen():
  long = []
  for module, path in MODULES.items():
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        lines = node.end_lineno - node.lineno + 1
        if lines > 60 and f"{module}.{node.name}" not in LONG_FUNCTIONS:
          long.append(f"{module}.{node.name}: {lines} lines")
  assert not long, "\n".join(long)
