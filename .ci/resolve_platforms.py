"""Resolves requirements.txt for every platform and Python the README promises.

    python .ci/resolve_platforms.py

For each (platform, Python) pair, evaluates the requirements' environment
markers as that platform would (pip's `--platform` does not: it evaluates
markers for the machine it runs on), then asks pip to resolve the result from
binary wheels alone (`pip install --dry-run --only-binary=:all: --platform
...`), dependencies included. Local source packages (`./jaxseg/models/native`,
built on install where a compiler is) are left out. Prints one line per pair
and exits 1 if any pair does not resolve.
"""

import os
import re
import subprocess
import sys
import tempfile

from pip._vendor.packaging.markers import default_environment
from pip._vendor.packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name: (wheel platform tags a machine of glibc 2.28 / macOS 14 takes,
#        sys_platform, platform_machine, platform_system)
PLATFORMS = {
  "linux-x86_64": (
    [f"manylinux_2_{g}_x86_64" for g in range(28, 16, -1)] + ["manylinux2014_x86_64"],
    "linux", "x86_64", "Linux",
  ),
  "linux-aarch64": (
    [f"manylinux_2_{g}_aarch64" for g in range(28, 16, -1)] + ["manylinux2014_aarch64"],
    "linux", "aarch64", "Linux",
  ),
  "macos-arm64": (
    [f"macosx_{v}_0_arm64" for v in range(14, 10, -1)], "darwin", "arm64", "Darwin",
  ),
}  # fmt: skip
PYTHONS = ("3.11", "3.12", "3.13")


def requirements_for(path: str, environment: dict) -> list[str]:
  """The pinned requirements of `path` whose markers hold in `environment`."""
  kept = []
  with open(path) as f:
    for raw in f:
      line = raw.split(" #", 1)[0].strip()
      if not line or line.startswith(("#", "./", "-")):
        continue
      requirement = Requirement(line)
      if requirement.marker is None or requirement.marker.evaluate(environment):
        kept.append(f"{requirement.name}{requirement.specifier}")
  return kept


def resolve(name: str, python: str) -> tuple[bool, str]:
  tags, sys_platform, machine, system = PLATFORMS[name]
  environment = {
    **default_environment(),
    "sys_platform": sys_platform,
    "platform_machine": machine,
    "platform_system": system,
    "python_version": python,
    "python_full_version": f"{python}.0",
  }
  with tempfile.TemporaryDirectory() as tmp:
    pins = os.path.join(tmp, "requirements.txt")
    with open(pins, "w") as f:
      f.write("\n".join(requirements_for(os.path.join(ROOT, "requirements.txt"), environment)))
    platforms = [arg for tag in tags for arg in ("--platform", tag)]
    for _ in range(5):
      result = subprocess.run(
        [
          sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
          "--no-cache-dir", "--only-binary=:all:", *platforms, "--python-version", python,
          "--implementation", "cp", "--find-links", WHEELS, "--target",
          os.path.join(tmp, "target"), "-r", pins,
        ],
        check=False, capture_output=True, text=True,
      )  # fmt: skip
      if result.returncode == 0:
        return True, "resolves"
      missing = re.search(r"No matching distribution found for (\S+)", result.stderr)
      if not (missing and _pure_python_wheel(missing.group(1))):
        break
  errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
  return False, (errors or result.stderr.splitlines()[-1:] or ["failed"])[-1]


# Wheels built here from sdists of pure-Python packages (e.g. `promise`, which
# TFDS needs): they install on every platform, but pip's --platform mode takes
# wheels only.
WHEELS = tempfile.mkdtemp(prefix="jaxseg-pure-wheels-")


def _pure_python_wheel(requirement: str) -> bool:
  """Builds `requirement`'s wheel into WHEELS; whether it is pure Python."""
  built = subprocess.run(
    [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", WHEELS,
     requirement],
    check=False, capture_output=True, text=True,
  )  # fmt: skip
  name = re.split(r"[<>=!~ ;]", requirement)[0].lower().replace("-", "_")
  wheels = [w for w in os.listdir(WHEELS) if w.lower().startswith(name)]
  return built.returncode == 0 and any(w.endswith("-py3-none-any.whl") for w in wheels)


def main() -> int:
  failed = 0
  for name in PLATFORMS:
    for python in PYTHONS:
      ok, message = resolve(name, python)
      failed += not ok
      print(f"{name:<14} Python {python}: {message}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
