"""Label maps for images and videos: `python -m jaxseg.predict --workdir=DIR --input=PATH`.

For every image in `--input` (a file or a folder: PNG, JPEG, 16-bit PNG,
multi-band TIFF or .npy, as `jaxseg.data.images` reads them), of any size
(Pillow's pixel limit is lifted), writes
`<name>.png`, the label map as a palette PNG (pixel values are class indices,
shown in the dataset's colours), and `<name>_overlay.jpg`, the colours blended
over the image (for other than uint8 RGB: over `--rgb_bands`, each stretched
between its 2nd and 98th percentiles). `--cutout` adds `<name>_cutout.png`, the image as RGBA with
the background transparent: alpha is 1 - P(`--background` class), or with
`--cutout_threshold` opaque where that reaches the threshold. A binary run
(`config.binary`) labels its foreground by its threshold. `--mode=slide`
tiles large images (memory bounded by a band of tiles, not the image);
`--scales` and `--flip` average test-time passes. An unreadable file is
reported and skipped; the summary counts successes and failures, and the exit
status is 1 if any file failed.

A video file (or a folder of frames with `--fps`) streams through the model
`--batch` frames per call (`inference.video`) into `<name>_overlay.mp4`, with the
input's size and timestamps, and with `--label_frames` one label PNG per frame
in `<name>_labels/`; it ends with frames/s and where the time went.

Without a training run, `--config=FILE --config.model.weights=NAME` predicts
with published weights (`hf:nvidia/segformer-b0-finetuned-ade-512-512`,
`torchvision:deeplabv3_resnet50`, or a file; `models.fetch` downloads a name
once into its cache), the config's dataset giving the class names and colours.

`--engine=onnxruntime` runs the run's own ONNX export in onnxruntime instead
of the jitted forward pass (`export.engine`; exported on first use into
`<workdir>/onnx/`), for images and video alike: on some CPUs the faster one
(README, Real time).
"""

import os
import sys

from absl import flags

from jaxseg import cli, errors
from jaxseg.data import get_dataset_spec, preprocessing
from jaxseg.export import engine
from jaxseg.inference import (
  decision,
  default_stride,
  image_files,
  make_label_fn,
  make_predict_fn,
  video,
)
from jaxseg.training import runs

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_run_flags(required=False)
  cli.define_config_flag(default="")
  cli.define_test_time_flags(crop_size="512,512")
  flags.DEFINE_string("input", None, "An image file or a folder of them.")
  flags.DEFINE_string("output", None, "Folder for the label maps and overlays.")
  flags.DEFINE_integer("tile_batch", 8, "Slide tiles per device call.")
  flags.DEFINE_float("alpha", 0.5, "Opacity of the colours in the overlay.")
  flags.DEFINE_list(
    "rgb_bands", None, "Bands shown as red, green, blue in overlays and cut-outs (e.g. 3,2,1)."
  )
  flags.DEFINE_integer("batch", 4, "Video frames per device call.")
  flags.DEFINE_bool("label_frames", False, "Video: also write every frame's label PNG.")
  flags.DEFINE_float(
    "fps", 0.0, "Treat a folder of frames as one clip at this frame rate (0: images one by one)."
  )
  flags.DEFINE_bool("cutout", False, "Also write <name>_cutout.png, the background transparent.")
  flags.DEFINE_string("background", "background", "Cut-out: the class that becomes transparent.")
  flags.DEFINE_float(
    "cutout_threshold", 0.0, "Cut-out: opaque where 1 - P(background) >= this; 0: soft alpha."
  )
  flags.DEFINE_enum(
    "engine", "jit", engine.ENGINES,
    "What runs the network: jit (XLA) or onnxruntime (the run's ONNX export).",
  )  # fmt: skip
  flags.mark_flags_as_required(["input", "output"])


def main(argv):
  del argv
  cli.quiet_logging()
  if video.is_video(FLAGS.input) or (FLAGS.fps > 0 and os.path.isdir(FLAGS.input)):
    predict_clip()  # A VideoError is one `error:` line (cli.run).
    return
  if not FLAGS.workdir:
    config, predict_fn = published_predictor()
  elif FLAGS.engine == "onnxruntime":
    config = runs.load_run_config(FLAGS.workdir)
    step = runs.resolve_step(config, FLAGS.workdir, FLAGS.checkpoint)
    predict_fn = engine.OnnxEngine(FLAGS.workdir, step).predict_fn()
  else:
    config, _, predict_fn = runs.load_predictor(FLAGS.workdir, FLAGS.checkpoint)
  spec = get_dataset_spec(config.data)
  norm = preprocessing.from_config(config)
  options = image_options(spec.class_names, norm.channels, decision(config, spec.class_names))
  inputs = image_files.list_inputs(FLAGS.input)
  failed = image_files.predict_files(inputs, predict_fn, norm, spec, FLAGS.output, options)
  done = len(inputs) - len(failed)
  print(f"{done} of {len(inputs)} images predicted into {FLAGS.output}; {len(failed)} failed")
  if failed:
    sys.exit(1)


def published_model():
  """`(config, model, variables)` of `--config` with `config.model.weights` (no run)."""
  if not FLAGS.config:
    raise errors.InvalidInput("give --workdir (a training run), or --config with published weights")
  if FLAGS.engine != "jit":
    raise errors.InvalidInput("--engine=onnxruntime runs a training run's export: give --workdir")
  [(_, config)] = cli.load_configs()
  return (config, *runs.load_published(config))


def published_predictor():
  """`(config, predict_fn)` of `published_model`."""
  config, model, variables = published_model()
  return config, make_predict_fn(model, variables, preprocessing.from_config(config))


def image_options(class_names, channels: int, run_decision) -> image_files.Options:
  """The flags as `image_files.Options`, checked against the run, with the
  run's `(foreground, threshold)` decision."""
  rgb_bands = tuple(int(b) for b in FLAGS.rgb_bands) if FLAGS.rgb_bands else None
  if rgb_bands is not None and not all(0 <= b < channels for b in rgb_bands):
    raise errors.InvalidInput(
      f"--rgb_bands={','.join(FLAGS.rgb_bands)}: the run's images have {channels} bands"
    )
  return image_files.Options(
    mode=FLAGS.mode,
    crop_size=FLAGS.crop_size,
    stride=FLAGS.stride or default_stride(FLAGS.crop_size),
    tile_batch=FLAGS.tile_batch,
    scales=tuple(float(s) for s in FLAGS.scales),
    flip=FLAGS.flip,
    alpha=FLAGS.alpha,
    rgb_bands=rgb_bands,
    background=cutout_class(class_names) if FLAGS.cutout else None,
    cutout_threshold=FLAGS.cutout_threshold,
    foreground=run_decision[0],
    threshold=run_decision[1],
  )


def cutout_class(class_names) -> int:
  """The index of `--background` among the run's classes; raises naming them
  if it is not one."""
  if FLAGS.background not in class_names:
    raise errors.InvalidInput(
      f"--cutout needs a background class: --background={FLAGS.background!r} is not one "
      f"of this run's classes {list(class_names)}"
    )
  if not 0 <= FLAGS.cutout_threshold < 1:
    raise errors.InvalidInput(f"--cutout_threshold={FLAGS.cutout_threshold} must be in [0, 1)")
  return list(class_names).index(FLAGS.background)


def predict_clip() -> None:
  """Streams a video (or a folder of frames at `--fps`) into an overlay video."""
  if FLAGS.mode != "whole" or tuple(float(s) for s in FLAGS.scales) != (1.0,) or FLAGS.flip:
    raise video.VideoError(
      "a video is predicted whole-frame at one scale: --mode=slide, --scales and "
      "--flip apply to images"
    )
  if FLAGS.batch < 1:
    raise video.VideoError(f"--batch={FLAGS.batch} must be at least 1")
  if FLAGS.cutout:
    raise video.VideoError("--cutout writes images; a video gets its overlay and --label_frames")
  published = published_model() if not FLAGS.workdir else None
  config = published[0] if published else runs.load_run_config(FLAGS.workdir)
  if os.path.isdir(FLAGS.input):
    paths = image_files.list_inputs(FLAGS.input)
    clip = video.open_frame_folder(FLAGS.input, paths, FLAGS.fps)
  else:
    clip = video.open_video(FLAGS.input)
  frames = f"{clip.num_frames} frames" if clip.num_frames else "frame count unknown"
  print(f"{FLAGS.input}: {clip.width}x{clip.height}, {float(clip.rate):.2f} frames/s, {frames}")
  spec = get_dataset_spec(config.data)
  label_fn = clip_label_fn(config, spec.class_names, published)
  os.makedirs(FLAGS.output, exist_ok=True)
  _, timing = video.predict_clip(
    clip, label_fn, FLAGS.output, spec.palette, batch_size=FLAGS.batch, alpha=FLAGS.alpha,
    label_frames=FLAGS.label_frames,
  )  # fmt: skip
  print(timing.summary())


def clip_label_fn(config, class_names, published=None):
  """Frames -> labels by `--engine`, with the run's decision and padding;
  `published`: `published_model()`'s network instead of the run's."""
  foreground, threshold = decision(config, class_names)
  norm = preprocessing.from_config(config)
  if FLAGS.engine == "onnxruntime":
    step = runs.resolve_step(config, FLAGS.workdir, FLAGS.checkpoint)
    onnx = engine.OnnxEngine(FLAGS.workdir, step)
    return onnx.label_fn(foreground=foreground, threshold=threshold, pad=norm.pad)
  if published:
    _, model, variables = published
  else:
    _, _, model, variables = runs.load_model(FLAGS.workdir, FLAGS.checkpoint)
  return make_label_fn(model, variables, foreground=foreground, threshold=threshold, norm=norm)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
