"""Exports a trained run for serving: `python -m jaxseg.export --workdir=DIR --output=DIR`.

`--format` (one or more of stablehlo, onnx, savedmodel, tflite; default stablehlo)
writes, into `--output`:
  model.jax       (stablehlo) the network with its preprocessing, serialized with
                  `jax.export` (StableHLO): the run's images (uint8 RGB
                  `[batch, H, W, 3]`, or its bands and sample type) in,
                  float32 logits `[batch, H, W, C]` out, any batch size and,
                  where the network allows, any height and width;
  model.onnx      (onnx) ONNX opset 17 for onnxruntime and the runtimes that
                  read ONNX: any batch and, where the network allows, any
                  height and width (translated by `jaxseg.to_onnx`);
  savedmodel/     (savedmodel) a TensorFlow SavedModel, `serve` signature,
                  any batch and, where the network allows, any height and width;
  model.tflite    (tflite) TFLite flatbuffer, one image of the tile size;
  metadata.json   class names, palette, tile size, normalisation, checkpoint,
                  and per format its file, input shape and parity check;
  serving.py      a loader and command line that run model.jax with only jax,
                  numpy and Pillow (`python serving.py --input=x.jpg --output=y.png`);
  serving_onnx.py the same for model.onnx with onnxruntime alone;
  serving_tf.py   the same for savedmodel/ and model.tflite with TensorFlow
                  (or ai-edge-litert) alone.

Every format is checked as it is written: run by its own runtime on random
images of two sizes, its logits equal the training code's within 1e-3 of the
largest |logit| (`check`); the worst difference is printed and stored.
"""

import functools
import json
import os
import shutil

import jax
import numpy as np
from absl import flags

from jaxseg import cli, errors, export_onnx, export_tf, inference, runs
from jaxseg.data import get_dataset_spec, labels
from jaxseg.models import onednn, preprocessing

FORMATS = ("stablehlo", "onnx", "savedmodel", "tflite")
# Largest |logit difference| an export may show against the training code,
# relative to the largest |logit| (or 1 if that is smaller).
TOLERANCE = 1e-3
# Formats besides StableHLO: (write, run on images, file), each of (model,
# variables, norm, output, size) -> metadata and (output, images) -> logits.
WRITERS = {
  "onnx": (export_onnx.save_onnx, export_onnx.run_onnx, "model.onnx"),
  "savedmodel": (export_tf.save_savedmodel, export_tf.run_savedmodel, "savedmodel"),
  "tflite": (export_tf.save_tflite, export_tf.run_tflite, "model.tflite"),
}

FLAGS = flags.FLAGS


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
  against the training code; returns the first format's path."""
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown or not formats:
    raise errors.InvalidInput(f"--format={','.join(formats)}: formats are {', '.join(FORMATS)}")
  config = runs.load_run_config(workdir)
  step = runs.resolve_step(config, workdir, which)
  model, variables = runs.load_variables(config, workdir, step)  # Baked in as constants.
  norm = preprocessing.from_config(config)
  predict_fn = inference.make_predict_fn(model, variables, norm)
  os.makedirs(output, exist_ok=True)
  written, paths = {}, []
  tile = [(1, *size), (2, *size)]
  other = (max(1, size[0] - 13), size[1] + 7)  # Not a multiple of 32.
  if "stablehlo" in formats:
    exported, symbolic = stablehlo_export(model, variables, norm, size, platforms)
    paths.append(os.path.join(output, "model.jax"))
    with open(paths[-1], "wb") as f:
      f.write(exported.serialize())
    spatial = [None, None] if symbolic else list(size)
    written["stablehlo"] = {"path": "model.jax", "input_shape": [None, *spatial, norm.channels],
                            "symbolic_size": symbolic}  # fmt: skip
    if jax.default_backend() in exported.platforms:
      run = lambda images: np.asarray(exported.call(images))
      shapes = [(2, *size), (1, *other)] if symbolic else tile
      written["stablehlo"]["check"] = check(run, predict_fn, norm, shapes, "stablehlo")
  for name, (save, run_export, path) in WRITERS.items():
    if name in formats:
      written[name] = save(model, variables, norm, output, size)
      paths.append(os.path.join(output, path))
      shapes = [(2, *size), (1, *other)] if written[name]["symbolic_size"] else tile
      run = functools.partial(run_export, output)
      written[name]["check"] = check(run, predict_fn, norm, shapes, name)
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
  if "stablehlo" in formats:
    metadata["platforms"] = list(exported.platforms)
  foreground, threshold = inference.decision(config, spec.class_names)
  if foreground is not None:  # A binary run: serving thresholds the foreground.
    metadata["binary"] = {"foreground": foreground, "threshold": threshold}
  with open(os.path.join(output, "metadata.json"), "w") as f:
    json.dump(metadata, f, indent=2)
  here = os.path.dirname(__file__)
  shutil.copy(os.path.join(here, "serving.py"), output)  # The others reuse its tiling.
  if "onnx" in formats:
    shutil.copy(os.path.join(here, "serving_onnx.py"), output)
  if {"savedmodel", "tflite"} & set(formats):
    shutil.copy(os.path.join(here, "serving_tf.py"), output)
  return paths[0]


def stablehlo_export(model, variables, norm, size, platforms):
  """`jax.export` of `inference.padded_forward`: any batch and, where the
  network allows, any height and width, else the tile size. Returns the
  `Exported` and whether its height and width are symbolic."""
  serve = jax.export.export(
    jax.jit(inference.padded_forward(model, variables, norm)), platforms=platforms
  )
  # XLA's convolutions only: an export runs where jaxseg's library is absent.
  with onednn.backend("xla"):
    return inference.export_any_size("stablehlo", serve, norm, size)


def check(run, predict_fn, norm, shapes, name: str) -> dict:
  """Runs the export on random images of each `(batch, h, w)` in `shapes` and
  compares with the training code's logits (whole images padded to a multiple
  of EXPORT_SIZE_MULTIPLE, cropped back). Float32 rounding grows with the
  logits, so the bound is TOLERANCE times the largest |logit| (at least 1)."""
  rng = np.random.default_rng(0)
  worst, scale = 0.0, 1.0
  for n, h, w in shapes:
    top = np.iinfo(norm.dtype).max
    images = rng.integers(0, top + 1, (n, h, w, norm.channels)).astype(norm.dtype)
    m = inference.EXPORT_SIZE_MULTIPLE
    height, width = -(-h // m) * m, -(-w // m) * m
    padded = np.stack([inference._pad_to(im, height, width, norm.pad) for im in images])
    expected = predict_fn(padded)[:, :h, :w]
    worst = max(worst, float(np.abs(run(images) - expected).max()))
    scale = max(scale, float(np.abs(expected).max()))
  print(
    f"{name}: worst |logit difference| against the training code {worst:.2e} "
    f"(largest |logit| {scale:.3g}) on {shapes}"
  )
  if worst > TOLERANCE * scale:
    raise RuntimeError(
      f"{name} export differs from the training code by {worst:.2e} "
      f"(more than {TOLERANCE:g} × the largest |logit|, {scale:.3g})"
    )
  return {"shapes": [list(s) for s in shapes], "max_abs_diff": worst, "max_abs_logit": scale}


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_run_flags()
  flags.DEFINE_string("output", None, "Directory for the export.")
  cli.define_size("size", "512,512", "Input tile H,W of the exported function.")
  flags.DEFINE_list("platforms", None, "Platforms to lower for (cpu, cuda, tpu); default this one.")
  flags.DEFINE_list("format", ["stablehlo"], f"Export formats: {', '.join(FORMATS)}.")
  flags.mark_flags_as_required(["output"])


def main(argv):
  del argv
  cli.quiet_logging()
  export_run(
    FLAGS.workdir, FLAGS.output, which=FLAGS.checkpoint, size=FLAGS.size,
    platforms=FLAGS.platforms, formats=tuple(FLAGS.format),
  )  # fmt: skip
  print(f"Exported {', '.join(FLAGS.format)} into {FLAGS.output} with metadata.json")
  scripts = {"stablehlo": "serving.py", "onnx": "serving_onnx.py", "savedmodel": "serving_tf.py",
             "tflite": "serving_tf.py --format=tflite"}  # fmt: skip
  for name in FLAGS.format:
    script = os.path.join(FLAGS.output, scripts[name])
    print(f"Run {name}: python {script} --input=IMAGE --output=OUT.png")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
