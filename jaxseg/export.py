"""Exports a trained run for serving: `python -m jaxseg.export --workdir=DIR --output=DIR`.

`--format` (one or more of stablehlo, savedmodel, tflite; default stablehlo)
writes, into `--output`:
  model.jax       (stablehlo) the network with its preprocessing, serialized with
                  `jax.export` (StableHLO): the run's images (uint8 RGB
                  `[batch, H, W, 3]`, or its bands and sample type) in,
                  float32 logits `[batch, H, W, C]` out, any batch size;
  savedmodel/     (savedmodel) a TensorFlow SavedModel, `serve` signature,
                  any batch and, where the network allows, any height and width;
  model.tflite    (tflite) TFLite flatbuffer, one image of the tile size;
  metadata.json   class names, palette, tile size, normalisation, checkpoint,
                  and per format its file, input shape and parity check;
  serving.py      a loader and command line that run model.jax with only jax,
                  numpy and Pillow (`python serving.py --input=x.jpg --output=y.png`);
  serving_tf.py   the same for savedmodel/ and model.tflite with TensorFlow
                  (or ai-edge-litert) alone.

Every format is checked as it is written: run by its own runtime on random
images, its logits equal the training code's within 1e-3 (`export_tf.check`);
the worst difference is printed and stored.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from jaxseg import cli, errors, export_tf, inference, runs
from jaxseg.data import get_dataset_spec, labels
from jaxseg.models import onednn, preprocessing

FORMATS = ("stablehlo", "savedmodel", "tflite")

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
  if "stablehlo" in formats:
    exported = _stablehlo(model, variables, norm, size, platforms)
    paths.append(os.path.join(output, "model.jax"))
    with open(paths[-1], "wb") as f:
      f.write(exported.serialize())
    written["stablehlo"] = {"path": "model.jax", "input_shape": [None, *size, norm.channels]}
    if jax.default_backend() in exported.platforms:
      run = lambda images: np.asarray(exported.call(images))
      written["stablehlo"]["check"] = export_tf.check(run, predict_fn, norm, tile, "stablehlo")
  if "savedmodel" in formats:
    written["savedmodel"] = export_tf.save_savedmodel(model, variables, norm, output, size)
    paths.append(os.path.join(output, "savedmodel"))
    other = (max(1, size[0] - 13), size[1] + 7)  # Not a multiple of 32.
    shapes = [(2, *size), (1, *other)] if written["savedmodel"]["symbolic_size"] else tile
    run = lambda images: export_tf.run_savedmodel(output, images)
    written["savedmodel"]["check"] = export_tf.check(run, predict_fn, norm, shapes, "savedmodel")
  if "tflite" in formats:
    written["tflite"] = export_tf.save_tflite(model, variables, norm, output, size)
    paths.append(os.path.join(output, "model.tflite"))
    run = lambda images: export_tf.run_tflite(output, images)
    written["tflite"]["check"] = export_tf.check(run, predict_fn, norm, tile, "tflite")
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
  shutil.copy(os.path.join(here, "serving.py"), output)  # serving_tf.py reuses its tiling.
  if {"savedmodel", "tflite"} & set(formats):
    shutil.copy(os.path.join(here, "serving_tf.py"), output)
  return paths[0]


def _stablehlo(model, variables, norm, size, platforms):
  """`jax.export` of the forward pass at the tile size, any batch."""

  def serve(images):
    return inference.forward_logits(model, variables, images, norm)

  (batch,) = jax.export.symbolic_shape("batch")
  spec_in = jax.ShapeDtypeStruct((batch, *size, norm.channels), jnp.dtype(norm.dtype))
  # XLA's convolutions only: an export runs where jaxseg's library is absent.
  with onednn.backend("xla"):
    return jax.export.export(jax.jit(serve), platforms=platforms)(spec_in)


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
  script = "serving.py" if "stablehlo" in FLAGS.format else "serving_tf.py"
  print(f"Run it: python {os.path.join(FLAGS.output, script)} --input=IMAGE --output=OUT.png")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
