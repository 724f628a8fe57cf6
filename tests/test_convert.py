"""`python -m jaxseg.convert`: a torchvision/timm file once into jaxseg's layout."""

import os
import subprocess
import sys

import numpy as np

from jaxseg.models import pretrained
from tests.helpers import save_safetensors, torchvision_resnet_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_convert_writes_a_file_jaxseg_loads_without_torch(tmp_path):
  state = torchvision_resnet_state((3, 4, 6, 3), bottleneck=True, width=4)
  source = save_safetensors(state, tmp_path / "resnet50.safetensors")
  out = tmp_path / "converted.safetensors"
  run = lambda arch: subprocess.run(
    [
      sys.executable,
      "-m",
      "jaxseg.convert",
      f"--arch={arch}",
      f"--input={source}",
      f"--output={out}",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  done = run("resnet50")
  assert done.returncode == 0, done.stderr
  assert "resnet50: 265 arrays" in done.stdout and "fc.weight" in done.stdout
  converted, arch, unused = pretrained.load(str(out))
  expected, _, _ = pretrained.load(source)
  assert arch == "resnet50" and unused == [] and converted.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(converted[key], value)
  wrong = run("resnet101")
  assert wrong.returncode != 0 and "holds a resnet50, not the --arch=resnet101" in wrong.stderr
