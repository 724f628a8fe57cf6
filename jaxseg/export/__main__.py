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
                  height and width (translated by `export.to_onnx`);
  savedmodel/     (savedmodel) a TensorFlow SavedModel, `serve` signature,
                  any batch and, where the network allows, any height and width;
  model.tflite    (tflite) TFLite flatbuffer, one image of any height and width
                  (LiteRT's resize_tensor_input), and model_tile.tflite, one of
                  the tile size, which XNNPACK runs whole (5x faster): serving
                  uses it for images that pad to the tile;
  metadata.json   class names, palette, tile size, normalisation, checkpoint,
                  and per format its file, input shape and parity check;
  serving.py      a loader and command line that run model.jax with only jax,
                  numpy and Pillow (`python serving.py --input=x.jpg --output=y.png`);
  serving_onnx.py the same for model.onnx with onnxruntime alone;
  serving_tf.py   the same for savedmodel/ with TensorFlow and model.tflite
                  with LiteRT (ai-edge-litert) alone.

Every format is checked as it is written: run by its own runtime on random
images of two sizes, its logits equal the training code's within 1e-3 of the
largest |logit| (`export.parity`); the worst difference is printed and stored.
"""

import os

from absl import flags

from jaxseg import cli
from jaxseg.export import exporter

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_run_flags()
  flags.DEFINE_string("output", None, "Directory for the export.")
  cli.define_size("size", "512,512", "Input tile H,W of the exported function.")
  flags.DEFINE_list("platforms", None, "Platforms to lower for (cpu, cuda, tpu); default this one.")
  flags.DEFINE_list("format", ["stablehlo"], f"Export formats: {', '.join(exporter.FORMATS)}.")
  flags.mark_flags_as_required(["output"])


def main(argv):
  del argv
  cli.quiet_logging()
  exporter.export_run(
    FLAGS.workdir, FLAGS.output, which=FLAGS.checkpoint, size=FLAGS.size,
    platforms=FLAGS.platforms, formats=tuple(FLAGS.format),
  )  # fmt: skip
  print(f"Exported {', '.join(FLAGS.format)} into {FLAGS.output} with metadata.json")
  for name in FLAGS.format:
    script = os.path.join(FLAGS.output, exporter.SERVING_FILES[name])
    option = " --format=tflite" if name == "tflite" else ""
    print(f"Run {name}: python {script}{option} --input=IMAGE --output=OUT.png")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
