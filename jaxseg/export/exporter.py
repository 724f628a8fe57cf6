"""Exporting a trained run (`jaxseg.export`): every format written, checked
against the training code, and described in `metadata.json`, with the
standalone serving files beside it."""

import contextlib
import functools
import json
import os
import shutil

import jax
import numpy as np

from jaxseg import errors
from jaxseg.data import get_dataset_spec, labels, preprocessing
from jaxseg.export import onnx_format, parity, stablehlo, tf_formats
from jaxseg.inference import decision, make_predict_fn
from jaxseg.training import runs

FORMATS = ("stablehlo", "onnx", "savedmodel", "tflite")
# Formats besides StableHLO: (write, run on images, file), each of (model,
# variables, norm, output, size) -> metadata and (output, images) -> logits.
WRITERS = {
  "onnx": (onnx_format.save_onnx, onnx_format.run_onnx, "model.onnx"),
  "savedmodel": (tf_formats.save_savedmodel, tf_formats.run_savedmodel, "savedmodel"),
  "tflite": (tf_formats.save_tflite, tf_formats.run_tflite, "model.tflite"),
}
# The standalone script that serves each format (the others reuse serving.py's tiling).
SERVING_FILES = {
  "stablehlo": "serving.py",
  "onnx": "serving_onnx.py",
  "savedmodel": "serving_tf.py",
  "tflite": "serving_tf.py",
}


def export_run(
  workdir: str,
  output: str,
  *,
  which="best",
  size=(512, 512),
  platforms=None,
  formats=("stablehlo",),
) -> str:
  """Exports the run in `workdir` to `output` in `formats`, each checked
  against the training code; returns the first format's path.

  Everything is written and checked in `OUTPUT.partial` first and moved into
  `output` at the end, `metadata.json` last: a killed or failed export never
  leaves a complete-looking `model.onnx`, SavedModel or TFLite file.
  """
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown or not formats:
    raise errors.InvalidInput(f"--format={','.join(formats)}: formats are {', '.join(FORMATS)}")
  config = runs.load_run_config(workdir)
  # Baked in as constants.
  step, model, variables = runs.load_readable_variables(config, workdir, which)
  norm = preprocessing.from_config(config)
  predict_fn = make_predict_fn(model, variables, norm)
  staging = os.path.normpath(output) + ".partial"
  shutil.rmtree(staging, ignore_errors=True)  # Left by a killed export.
  try:
    what = f"the {config.model.name} run in {workdir}"
    run = (config, step, model, variables, norm, predict_fn)
    names = _write_all(*run, staging, size, platforms, formats, what=what)
    _move_into(staging, output)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return os.path.join(output, names[0])


def _write_all(config, step, model, variables, norm, predict_fn, output, size, platforms,
               formats, *, what) -> list[str]:  # fmt: skip
  """Writes and checks every format, `metadata.json` and the serving files
  into `output`; returns the formats' file names, in `formats`' order."""
  with failing_as_one_line(what, "writing"):
    os.makedirs(output, exist_ok=True)
  written, paths, platforms_written = {}, [], None
  if "stablehlo" in formats:
    with failing_as_one_line(what, "stablehlo"):
      written["stablehlo"], platforms_written = _write_stablehlo(
        model, variables, norm, output, size, platforms, predict_fn
      )
    paths.append("model.jax")
  for name, (save, run_export, path) in WRITERS.items():
    if name in formats:
      with failing_as_one_line(what, name):
        written[name] = save(model, variables, norm, output, size)
        run = functools.partial(run_export, output)
        shapes = _check_shapes(size, written[name]["symbolic_size"])
        written[name]["check"] = parity.check(run, predict_fn, norm, shapes, name)
      paths.append(path)
  metadata = _metadata(config, step, norm, size, written)
  if platforms_written is not None:
    metadata["platforms"] = platforms_written
  with failing_as_one_line(what, "writing"):
    with open(os.path.join(output, "metadata.json"), "w") as f:
      json.dump(metadata, f, indent=2)
    here = os.path.dirname(__file__)
    for script in sorted({"serving.py", *(SERVING_FILES[name] for name in formats)}):
      shutil.copy(os.path.join(here, script), output)
  return paths


def _move_into(staging: str, output: str) -> None:
  """Moves every entry of `staging` into `output` (replacing what is there),
  `metadata.json` last; a new `output` is the staging directory renamed."""
  try:
    if not os.path.exists(output):
      os.rename(staging, output)
      return
    entries = sorted(os.listdir(staging), key=lambda name: name == "metadata.json")
    for name in entries:
      target = os.path.join(output, name)
      if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
      os.replace(os.path.join(staging, name), target)
  except OSError as e:
    raise errors.ExportFailed(f"moving the export into {output}: {e}") from e


@contextlib.contextmanager
def failing_as_one_line(what: str, fmt: str):
  """Any failure writing or checking format `fmt` of `what` (a converter's
  report, a runtime's refusal, a parity miss) as one `errors.ExportFailed`
  line naming both."""
  try:
    yield
  except errors.UserError:
    raise
  except Exception as e:  # Converters raise anything; the command says it in one line.
    raise errors.ExportFailed(
      f"{what}: the {fmt} export failed: {errors.summary(e)} "
      "(JAXSEG_TRACEBACK=1 shows the traceback)"
    ) from e


def _check_shapes(size, symbolic: bool) -> list[tuple[int, int, int]]:
  """`(batch, h, w)` of the check: two batches of the tile, or, for an export
  of any size, also an image of a size that is not a multiple of 32."""
  other = (max(1, size[0] - 13), size[1] + 7)
  return [(2, *size), (1, *other)] if symbolic else [(1, *size), (2, *size)]


def _write_stablehlo(model, variables, norm, output, size, platforms, predict_fn):
  """Writes `model.jax`; returns what `metadata.json` says of it and the
  platforms it was lowered for."""
  exported, symbolic = stablehlo.stablehlo_export(model, variables, norm, size, platforms)
  with open(os.path.join(output, "model.jax"), "wb") as f:
    f.write(exported.serialize())
  spatial = [None, None] if symbolic else list(size)
  written = {"path": "model.jax", "input_shape": [None, *spatial, norm.channels],
             "symbolic_size": symbolic}  # fmt: skip
  if jax.default_backend() in exported.platforms:  # Checked where it can run.
    run = lambda images: np.asarray(exported.call(images))
    written["check"] = parity.check(run, predict_fn, norm, _check_shapes(size, symbolic),
                                    "stablehlo")  # fmt: skip
  return written, list(exported.platforms)


def _metadata(config, step: int, norm, size, written: dict) -> dict:
  """`metadata.json`: what the serving files need to know of the run."""
  spec = get_dataset_spec(config.data)
  metadata = {
    "model": config.model.name,
    "dataset": config.data.name,
    "checkpoint_step": int(step),
    "input_size": list(size),
    "input": f"{norm.dtype} [batch, H, W, {norm.channels}]; normalisation is inside the model",
    "output": "float32 logits [batch, H, W, num_classes]",
    "input_dtype": norm.dtype,
    "channels": norm.channels,
    "mean": list(norm.mean),
    "std": list(norm.std),
    "pad_colour": norm.pad.tolist(),
    "class_names": list(spec.class_names),
    "palette": spec.palette.tolist(),
    "ignore_label": labels.IGNORE_LABEL,
    "formats": written,
  }
  foreground, threshold = decision(config, spec.class_names)
  if foreground is not None:  # A binary run: serving thresholds the foreground.
    metadata["binary"] = {"foreground": foreground, "threshold": threshold}
  return metadata
