"""pyproject.toml's ranges and requirements.txt's pins describe one install."""

import os
import tomllib

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins() -> dict[str, list[Requirement]]:
  """requirements.txt's pins and requirements-convert.txt's (torch and co.)."""
  pins = {}
  for name in ("requirements.txt", "requirements-convert.txt"):
    with open(os.path.join(ROOT, name)) as f:
      for raw in f:
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "./", "-")):
          requirement = Requirement(line)
          pins.setdefault(requirement.name.lower(), []).append(requirement)
  return pins


def _project() -> dict:
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]


def test_every_pin_is_inside_the_packages_ranges():
  pins = _pins()
  project = _project()
  declared = [Requirement(r) for r in project["dependencies"]]
  for requirements in project["optional-dependencies"].values():
    declared += [Requirement(r) for r in requirements if not r.startswith("jaxseg[")]
  for requirement in declared:
    pinned = pins.get(requirement.name.lower())
    assert pinned, f"{requirement.name} is declared in pyproject.toml but not pinned"
    for pin in pinned:
      (version,) = [s.version for s in pin.specifier]
      assert requirement.specifier.contains(version), f"{pin} is outside {requirement}"


def test_core_dependencies_are_what_the_runtime_imports():
  names = {Requirement(r).name.lower() for r in _project()["dependencies"]}
  for module in ("jax", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets",
                 "ml-collections", "numpy", "pillow", "tifffile", "imagecodecs"):  # fmt: skip
    assert module in names
  assert not names & {"tensorflow", "tensorflow-cpu", "torch", "pytest", "ruff", "av"}


def test_license_is_apache_2():
  with open(os.path.join(ROOT, "LICENSE")) as f:
    assert "Apache License" in f.read(200)
  assert _project()["license"] == "Apache-2.0"
