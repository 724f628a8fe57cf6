"""`jaxseg.predict --engine=onnxruntime`: the run's own ONNX export serves
images and video frames with the jitted forward pass's labels."""

import os
import shutil

import numpy as np
from PIL import Image

from jaxseg.data import preprocessing
from jaxseg.export import engine
from jaxseg.inference import make_label_fn
from jaxseg.training import runs
from tests.helpers import run_command


def _copy(trained_run, tmp_path) -> str:
  """The session's run, copied: the engine writes its exports into the workdir."""
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_run[0], workdir)
  return workdir


def test_predict_with_onnxruntime_gives_the_jitted_labels(trained_run, tmp_path):
  """Images of two odd sizes, predicted by both engines: the same label
  maps; the export is made once into the run and reused by the next call."""
  workdir = _copy(trained_run, tmp_path)
  rng = np.random.default_rng(3)
  inputs = tmp_path / "in"
  inputs.mkdir()
  for name, shape in {"small": (40, 52, 3), "wide": (70, 150, 3)}.items():
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(inputs / f"{name}.png")
  labels, exported = {}, []
  for name in ("jit", "onnxruntime", "onnxruntime"):  # The second time, from the run.
    out = tmp_path / name
    done = run_command(
      "jaxseg.predict", f"--workdir={workdir}", f"--input={inputs}", f"--output={out}",
      f"--engine={name}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 of 2 images predicted" in done.stdout
    labels[name] = {n: np.asarray(Image.open(out / f"{n}.png")) for n in ("small", "wide")}
    if name == "onnxruntime":
      exported.append("exporting" in done.stdout)
  assert exported == [True, False]
  for n, want in labels["jit"].items():
    got = labels["onnxruntime"][n]
    assert got.shape == want.shape and np.mean(got == want) >= 0.999, n
  finished = [d for d, _, files in os.walk(os.path.join(workdir, "onnx")) if "model.onnx" in files]
  assert finished and not any(".partial" in d for d in finished)


def test_video_frames_get_the_jitted_labels(trained_run, tmp_path):
  """The frame label function of the onnxruntime engine equals
  `make_label_fn` on frames whose size is not a multiple of 32."""
  workdir = _copy(trained_run, tmp_path)
  config, step, model, variables = runs.load_model(workdir, "best")
  norm = preprocessing.from_config(config)
  frames = np.random.default_rng(4).integers(0, 256, (3, 45, 71, 3), np.uint8)
  want = make_label_fn(model, variables, norm=norm)(frames)
  got = engine.OnnxEngine(workdir, step).label_fn(pad=norm.pad)(frames)
  assert got.shape == want.shape == (3, 45, 71) and got.dtype == np.uint8
  assert np.mean(got == want) >= 0.999
