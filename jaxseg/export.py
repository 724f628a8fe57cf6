"""Exports a trained run for serving: `python -m jaxseg.export --workdir=DIR --output=DIR`.

Writes, into `--output`:
  model.jax       the network with its preprocessing, serialized with
                  `jax.export` (StableHLO): the run's images (uint8 RGB
                  `[batch, H, W, 3]`, or its bands and sample type) in,
                  float32 logits `[batch, H, W, C]` out, any batch size;
  metadata.json   class names, palette, tile size, normalisation, checkpoint;
  serving.py      a loader and command line that run it with only jax, numpy
                  and Pillow (`python serving.py --input=x.jpg --output=y.png`).
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
from absl import flags

from jaxseg import cli, inference, runs
from jaxseg.data import get_dataset_spec, labels
from jaxseg.models import onednn, preprocessing

FLAGS = flags.FLAGS


def export_run(workdir: str, output: str, *, which="best", size=(512, 512), platforms=None) -> str:
  """Exports the run in `workdir` to `output`; returns the model file's path."""
  config = runs.load_run_config(workdir)
  step = runs.resolve_step(config, workdir, which)
  model, variables = runs.load_variables(config, workdir, step)  # Baked in as constants.

  norm = preprocessing.from_config(config)

  def serve(images):
    return inference.forward_logits(model, variables, images, norm)

  (batch,) = jax.export.symbolic_shape("batch")
  spec_in = jax.ShapeDtypeStruct((batch, *size, norm.channels), jnp.dtype(norm.dtype))
  # XLA's convolutions only: an export runs where jaxseg's library is absent.
  with onednn.backend("xla"):
    exported = jax.export.export(jax.jit(serve), platforms=platforms)(spec_in)
  os.makedirs(output, exist_ok=True)
  path = os.path.join(output, "model.jax")
  with open(path, "wb") as f:
    f.write(exported.serialize())
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
    "platforms": list(exported.platforms),
  }
  foreground, threshold = inference.decision(config, spec.class_names)
  if foreground is not None:  # A binary run: serving thresholds the foreground.
    metadata["binary"] = {"foreground": foreground, "threshold": threshold}
  with open(os.path.join(output, "metadata.json"), "w") as f:
    json.dump(metadata, f, indent=2)
  shutil.copy(os.path.join(os.path.dirname(__file__), "serving.py"), output)
  return path


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_run_flags()
  flags.DEFINE_string("output", None, "Directory for the export.")
  cli.define_size("size", "512,512", "Input tile H,W of the exported function.")
  flags.DEFINE_list("platforms", None, "Platforms to lower for (cpu, cuda, tpu); default this one.")
  flags.mark_flags_as_required(["output"])


def main(argv):
  del argv
  cli.quiet_logging()
  path = export_run(
    FLAGS.workdir, FLAGS.output, which=FLAGS.checkpoint, size=FLAGS.size, platforms=FLAGS.platforms
  )
  print(f"Exported {path} ({os.path.getsize(path) / 1e6:.1f} MB) with metadata.json and serving.py")
  print(f"Run it: python {os.path.join(FLAGS.output, 'serving.py')} --input=IMAGE --output=OUT.png")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
