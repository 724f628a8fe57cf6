"""`python -m jaxseg.export`: a run serialised, served without jaxseg installed."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import errors, inference
from jaxseg.export import exporter, parity, stablehlo
from jaxseg.training import runs
from tests.helpers import run_command
from tests.models.test_transformer_networks import TINY as TRANSFORMER_TINY
from tests.models.test_zoo import TINY


def _serve_in_fresh_process(script: str, export_dir, *files: str) -> None:
  """Runs `script` with argv [export_dir, *files] in a new interpreter."""
  served = subprocess.run(
    [sys.executable, "-c", script, str(export_dir), *files],
    capture_output=True, text=True, cwd=str(export_dir), timeout=600,
  )  # fmt: skip
  assert served.returncode == 0, served.stderr[-3000:]


@pytest.mark.slow
def test_export_runs_in_a_fresh_process_without_the_training_code(trained_run, tmp_path):
  workdir, _ = trained_run
  out = run_command(
    "jaxseg.export", f"--workdir={workdir}", f"--output={tmp_path / 'export'}", "--size=64,64"
  )
  assert out.returncode == 0, out.stderr[-3000:]
  rng = np.random.default_rng(2)
  fits, large = (
    rng.integers(0, 256, (64, 64, 3), np.uint8),
    rng.integers(0, 256, (50, 90, 3), np.uint8),
  )
  np.save(tmp_path / "fits.npy", fits)
  np.save(tmp_path / "large.npy", large)
  script = (
    "import sys, numpy as np\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from serving import ExportedSegmenter\n"
    "m = ExportedSegmenter(sys.argv[1])\n"
    "batch = np.stack([np.load(sys.argv[2])] * 3)\n"
    "assert m.logits(batch).shape == (3, 64, 64, len(m.class_names))\n"  # Any batch size.
    "np.save(sys.argv[4], m.predict(np.load(sys.argv[2])))\n"
    "np.save(sys.argv[5], m.predict(np.load(sys.argv[3])))\n"
    "loaded = {k.split('.')[0] for k in sys.modules}\n"
    "assert not loaded & {'jaxseg', 'flax'}, 'imported training code'\n"
  )
  files = [str(tmp_path / n) for n in ("fits.npy", "large.npy", "a.npy", "b.npy")]
  _serve_in_fresh_process(script, tmp_path / "export", *files)
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  np.testing.assert_array_equal(np.load(files[2]), inference.whole(predict_fn, fits).argmax(-1))
  # Any size, as predict runs it: padded to a multiple of 32, pyramid pooled whole.
  expected = inference.whole(predict_fn, large).argmax(-1)
  assert (np.load(files[3]) == expected).mean() >= 0.999
  with open(tmp_path / "export" / "metadata.json") as f:
    metadata = json.load(f)
  assert metadata["input_size"] == [64, 64] and metadata["checkpoint_step"] == 4
  assert metadata["formats"]["stablehlo"]["symbolic_size"] is True  # Pyramid pooling too.
  assert metadata["class_names"][1] == "circle"


@pytest.mark.slow
def test_savedmodel_and_tflite_exports_are_checked_and_served_by_their_runtime(
  tmp_path, trained_run
):
  """PSPNet (the trained tiny run, configs/default.py) to a SavedModel and a
  TFLite file of any image size, each checked against the training code when
  written; `serving_tf.py` runs them in a process that imports neither jaxseg
  nor Flax (TensorFlow itself imports JAX where it is installed) and labels
  images of any size, small and odd ones included, as predict does (the
  pyramid pooling over the whole padded image, not over a tile)."""
  workdir, _ = trained_run
  out_dir = tmp_path / "export"
  exporter.export_run(workdir, str(out_dir), size=(64, 64), formats=("savedmodel", "tflite"))
  with open(out_dir / "metadata.json") as f:
    formats = json.load(f)["formats"]
  assert set(formats) == {"savedmodel", "tflite"}
  for info in formats.values():
    assert info["check"]["max_abs_diff"] <= 1e-3 and len(info["check"]["shapes"]) == 2
    assert info["symbolic_size"] is True
  assert formats["tflite"]["input_shape"] == [1, None, None, 3]
  # Beside it the tile model, which XNNPACK runs whole: a 50×60 image pads to
  # the 64×64 tile as predict pads it, so it runs there.
  assert formats["tflite"]["tile_path"] == "model_tile.tflite"
  assert (out_dir / "model_tile.tflite").is_file()
  sizes = [(96, 96), (250, 333), (701, 1003), (50, 60)]
  rng = np.random.default_rng(3)
  for k, size in enumerate(sizes):
    np.save(tmp_path / f"image{k}.npy", rng.integers(0, 256, (*size, 3), np.uint8))
  script = (
    "import sys, numpy as np\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from serving_tf import SavedModelSegmenter, TFLiteSegmenter\n"
    "models = {'sm': SavedModelSegmenter(sys.argv[1]), 'tfl': TFLiteSegmenter(sys.argv[1])}\n"
    f"for k in range({len(sizes)}):\n"
    "  image = np.load(f'{sys.argv[2]}/image{k}.npy')\n"
    "  for name, m in models.items():\n"
    "    np.save(f'{sys.argv[2]}/{name}{k}.npy', m.predict(image))\n"
    "loaded = {k.split('.')[0] for k in sys.modules}\n"
    "assert not loaded & {'jaxseg', 'flax'}, loaded & {'jaxseg', 'flax'}\n"
  )
  _serve_in_fresh_process(script, out_dir, str(tmp_path))
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  for k, size in enumerate(sizes):
    expected = inference.whole(predict_fn, np.load(tmp_path / f"image{k}.npy")).argmax(-1)
    for name in ("sm", "tfl"):
      got = np.load(tmp_path / f"{name}{k}.npy")
      assert got.shape == size and (got == expected).mean() >= 0.999, (name, size)


def test_onnx_export_is_checked_and_served_by_onnxruntime_alone(tmp_path, trained_run):
  """PSPNet (the trained tiny run, configs/default.py) to ONNX from the command
  line, checked when written; `serving_onnx.py` runs it in a process that
  imports neither JAX nor jaxseg nor Flax and labels images of any size, small
  and odd ones included, as predict does (pyramid pooling over the whole
  padded image, not over a tile)."""
  workdir, _ = trained_run
  out_dir = tmp_path / "export"
  out = run_command(
    "jaxseg.export", f"--workdir={workdir}", f"--output={out_dir}", "--size=64,64",
    "--format=onnx",
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  assert "onnx: worst |logit difference| against the training code" in out.stdout
  with open(out_dir / "metadata.json") as f:
    info = json.load(f)["formats"]["onnx"]
  assert info["check"]["max_abs_diff"] <= 1e-3 and len(info["check"]["shapes"]) == 2
  assert info["input_shape"][0] is None and info["opset"] == 17
  assert info["symbolic_size"] is True
  rng = np.random.default_rng(4)
  sizes = [(96, 96), (250, 333), (701, 1003)]
  for k, size in enumerate(sizes):
    np.save(tmp_path / f"image{k}.npy", rng.integers(0, 256, (*size, 3), np.uint8))
  script = (
    "import sys, numpy as np\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from serving_onnx import OnnxSegmenter\n"
    "m = OnnxSegmenter(sys.argv[1])\n"
    f"for k in range({len(sizes)}):\n"
    "  np.save(f'{sys.argv[2]}/labels{k}.npy', m.predict(np.load(f'{sys.argv[2]}/image{k}.npy')))\n"
    "assert m.logits(np.zeros((3, 64, 64, 3), np.uint8)).shape == (3, 64, 64, len(m.class_names))\n"
    "loaded = {k.split('.')[0] for k in sys.modules}\n"
    "assert not loaded & {'jax', 'jaxseg', 'flax'}, loaded & {'jax', 'jaxseg', 'flax'}\n"
  )
  _serve_in_fresh_process(script, out_dir, str(tmp_path))
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  for k, size in enumerate(sizes):
    expected = inference.whole(predict_fn, np.load(tmp_path / f"image{k}.npy")).argmax(-1)
    got = np.load(tmp_path / f"labels{k}.npy")
    assert got.shape == size and (got == expected).mean() >= 0.999, size


def test_unknown_export_format_is_named(trained_run, tmp_path):
  workdir, _ = trained_run
  with pytest.raises(errors.InvalidInput, match="--format=coreml: formats are stablehlo, onnx"):
    exporter.export_run(workdir, str(tmp_path), formats=("coreml",))


@pytest.mark.slow
def test_stablehlo_takes_any_size_where_the_network_allows():
  """U-Net (tiny) exports with symbolic height and width (the trained PSPNet
  of the first test, whose pyramid pooling needs the tile size, does not)."""
  from jaxseg.data import preprocessing
  from jaxseg.models import unet

  norm = preprocessing.IMAGENET
  model = unet._tiny(num_classes=3)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  exported, symbolic = stablehlo.stablehlo_export(model, variables, norm, (64, 64), None)
  assert symbolic
  predict_fn = inference.make_predict_fn(model, variables, norm)
  run = lambda images: np.asarray(exported.call(images))
  worst = parity.check(run, predict_fn, norm, [(2, 64, 64), (1, 51, 71)], "stablehlo")
  assert worst["max_abs_diff"] < 1e-4


@pytest.mark.parametrize(
  "name",
  [
    *(pytest.param(n, marks=pytest.mark.slow) if n == "lraspp" else n for n in sorted(TINY)),
    "upernet_swin",
  ],
)
def test_tflite_takes_every_network_of_the_zoo(name, tmp_path):
  """TFLite's converter refuses rank-4 batch matmuls, pads of rank 6 and, at
  symbolic sizes, gathers, dynamic slices and argmax: the squeeze-excitation's
  1×1 convolutions, the pyramid pooling, resizes, crops, SegNet's pooling
  indices and FCN's learned up-sampling are written in forms it takes, so
  every network exports for any image size and equals the training code on
  a multiple of 32 and on an odd size."""
  from jaxseg.data import preprocessing
  from jaxseg.export import tf_formats

  model = TINY[name][0](num_classes=3) if name in TINY else TRANSFORMER_TINY[name](num_classes=3)
  norm = preprocessing.IMAGENET
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 96, 3)), train=False)
  # The any-size model alone (the tile model is tested with the trained run).
  info = tf_formats.save_tflite(model, variables, norm, str(tmp_path), (64, 96), with_tile=False)
  assert info["symbolic_size"] and info["input_shape"] == [1, None, None, 3]
  run = lambda images: tf_formats.run_tflite(str(tmp_path), images)
  predict_fn = inference.make_predict_fn(model, variables, norm)
  check = parity.check(run, predict_fn, norm, [(1, 64, 96), (1, 51, 71)], "tflite")
  assert check["max_abs_diff"] <= 1e-3 * max(1.0, check["max_abs_logit"])


def test_a_failed_export_leaves_no_file_under_its_final_name(trained_run, tmp_path, monkeypatch):
  """Formats are written and checked in OUTPUT.partial and moved in at the
  end: an export stopped after writing model.onnx (here its check fails, as a
  kill would stop it) leaves nothing under `output`, and a failed re-export
  leaves the previous export as it was."""
  workdir, _ = trained_run
  out_dir = tmp_path / "export"
  exporter.export_run(workdir, str(out_dir), size=(64, 64), formats=("stablehlo",))
  before = sorted(os.listdir(out_dir))

  def failing_check(*args, **kwargs):
    assert os.path.exists(tmp_path / "export.partial" / "model.onnx")  # Written, then stopped.
    raise RuntimeError("stopped")

  monkeypatch.setattr(exporter.parity, "check", failing_check)
  with pytest.raises(errors.ExportFailed, match="the onnx export failed: stopped"):
    exporter.export_run(workdir, str(out_dir), size=(64, 64), formats=("onnx",))
  assert sorted(os.listdir(out_dir)) == before and "model.onnx" not in before
  assert not os.path.exists(tmp_path / "export.partial")
  fresh = tmp_path / "fresh"
  with pytest.raises(errors.ExportFailed):
    exporter.export_run(workdir, str(fresh), size=(64, 64), formats=("onnx",))
  assert not os.path.exists(fresh)
