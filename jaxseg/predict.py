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
`--batch` frames per call (`jaxseg.video`) into `<name>_overlay.mp4`, with the
input's size and timestamps, and with `--label_frames` one label PNG per frame
in `<name>_labels/`; it ends with frames/s and where the time went.
"""

import os
import sys
import time

import numpy as np
from absl import flags
from PIL import Image
from tqdm.auto import tqdm

from jaxseg import cli, errors, inference, runs, video
from jaxseg.data import get_dataset_spec, images, labels
from jaxseg.models import preprocessing

FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = images.EXTENSIONS
BIG_IMAGE_PIXELS = 16 * 2**20  # Slide mode shows its progress on images this large.


def list_inputs(path: str) -> list[str]:
  if os.path.isdir(path):
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
    return [os.path.join(path, n) for n in names]
  if not os.path.exists(path):
    raise errors.MissingInput(f"--input={path} does not exist")
  return [path]


def save_label_png(label: np.ndarray, palette: np.ndarray, path: str) -> None:
  """`[H, W]` class indices as a palette-indexed PNG (values stay the indices)."""
  image = Image.fromarray(label.astype(np.uint8), mode="P")
  flat = np.zeros((256, 3), np.uint8)
  flat[: len(palette)] = palette
  flat[labels.IGNORE_LABEL] = labels.IGNORE_COLOUR
  image.putpalette(flat.ravel().tolist())
  image.save(path)


def overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
  """Class colours blended over the image, a band of rows at a time (large
  images would otherwise need several float copies of themselves)."""
  out = np.empty_like(image)
  for row in range(0, len(image), 512):
    rows = slice(row, row + 512)
    colours = labels.colorize(label[rows], palette).astype(np.float32)
    out[rows] = (image[rows] * (1 - alpha) + colours * alpha).round().astype(np.uint8)
  return out


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


def cutout_alpha(background_prob: np.ndarray, threshold: float = 0.0) -> np.ndarray:
  """uint8 alpha from the background's probability: `255 (1 - p)`, or with a
  threshold > 0, 255 where `1 - p >= threshold` and 0 elsewhere."""
  foreground = 1.0 - background_prob
  if threshold > 0:
    return np.where(foreground >= threshold, 255, 0).astype(np.uint8)
  return np.clip(np.round(255 * foreground), 0, 255).astype(np.uint8)


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_run_flags()
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
  flags.mark_flags_as_required(["input", "output"])


def predict_clip(config, model, variables) -> None:
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
  if os.path.isdir(FLAGS.input):
    clip = video.open_frame_folder(FLAGS.input, list_inputs(FLAGS.input), FLAGS.fps)
  else:
    clip = video.open_video(FLAGS.input)
  spec = get_dataset_spec(config.data)
  out_path = os.path.join(FLAGS.output, f"{clip.name}_overlay.mp4")
  label_dir = os.path.join(FLAGS.output, f"{clip.name}_labels") if FLAGS.label_frames else ""
  frames = f"{clip.num_frames} frames" if clip.num_frames else "frame count unknown"
  print(f"{FLAGS.input}: {clip.width}x{clip.height}, {float(clip.rate):.2f} frames/s, {frames}")
  writer, all_pts = None, []

  def write(pts, frames, frame_labels):
    nonlocal writer
    if writer is None:  # Opened on the first frame: an empty clip leaves no file.
      writer = video.VideoWriter(out_path, clip)
      if label_dir:
        os.makedirs(label_dir, exist_ok=True)
    for p, frame, label in zip(pts, frames, frame_labels, strict=True):
      writer.write(p, overlay(frame, label, spec.palette, FLAGS.alpha))
      if label_dir:
        save_label_png(label, spec.palette, os.path.join(label_dir, f"{len(all_pts):06d}.png"))
      all_pts.append(p)

  foreground, threshold = inference.decision(config, spec.class_names)
  label_fn = inference.make_label_fn(
    model, variables, foreground=foreground, threshold=threshold,
    norm=preprocessing.from_config(config),
  )  # fmt: skip
  with tqdm(total=clip.num_frames or None, unit="frame", desc=clip.name) as bar:
    try:
      timing = video.segment_clip(
        clip, label_fn, batch_size=FLAGS.batch, write=write, progress=bar.update
      )
    finally:
      if writer is not None:
        writer.close()
  print(f"{out_path}: {timing.frames} frames" + (f", labels in {label_dir}" if label_dir else ""))
  intervals = np.diff(all_pts) * float(clip.time_base) * 1000
  if len(intervals) and intervals.max() - intervals.min() > 1:
    print(
      f"variable frame rate: frames {intervals.min():.1f} to {intervals.max():.1f} ms apart; "
      "the overlay keeps every frame's timestamp"
    )
  if clip.width % 2 or clip.height % 2:
    print(f"odd frame size {clip.width}x{clip.height}: written in 4:4:4 chroma to keep it")
  print(timing.summary())


def main(argv):
  del argv
  cli.quiet_logging()
  if video.is_video(FLAGS.input) or (FLAGS.fps > 0 and os.path.isdir(FLAGS.input)):
    config, _, model, variables = runs.load_model(FLAGS.workdir, FLAGS.checkpoint)
    os.makedirs(FLAGS.output, exist_ok=True)
    predict_clip(config, model, variables)  # A VideoError is one `error:` line (cli.run).
    return
  config, _, predict_fn = runs.load_predictor(FLAGS.workdir, FLAGS.checkpoint)
  spec = get_dataset_spec(config.data)
  norm = preprocessing.from_config(config)
  rgb_bands = tuple(int(b) for b in FLAGS.rgb_bands) if FLAGS.rgb_bands else None
  if rgb_bands is not None and not all(0 <= b < norm.channels for b in rgb_bands):
    raise errors.InvalidInput(
      f"--rgb_bands={','.join(FLAGS.rgb_bands)}: the run's images have {norm.channels} bands"
    )
  background = cutout_class(spec.class_names) if FLAGS.cutout else None
  foreground, threshold = inference.decision(config, spec.class_names)
  crop = FLAGS.crop_size
  stride = FLAGS.stride or inference.default_stride(crop)
  scales = tuple(float(s) for s in FLAGS.scales)
  os.makedirs(FLAGS.output, exist_ok=True)

  def per_pixel(probs: np.ndarray) -> np.ndarray:
    """`[..., 2]` uint8: the label and the cut-out's alpha (or `[...]` labels)."""
    label = inference.decide(probs, foreground, threshold).astype(np.uint8)
    if background is None:
      return label
    return np.stack([label, cutout_alpha(probs[..., background], FLAGS.cutout_threshold)], -1)

  def predict(image: np.ndarray, name: str) -> np.ndarray:
    if FLAGS.mode == "slide" and scales == (1.0,) and not FLAGS.flip:
      # Rows done, for images that take a while.
      big = image.shape[0] * image.shape[1] >= BIG_IMAGE_PIXELS
      with tqdm(total=image.shape[0], unit="row", desc=name, disable=not big) as bar:
        return inference.slide_map(
          predict_fn, image, per_pixel, bar.update, crop_size=crop, stride=stride,
          tile_batch=FLAGS.tile_batch, pad=norm.pad,
        )  # fmt: skip
    probs = inference.predict_probs(
      predict_fn, image, mode=FLAGS.mode, scales=scales, flip=FLAGS.flip, crop_size=crop,
      stride=stride, tile_batch=FLAGS.tile_batch, pad=norm.pad,
    )  # fmt: skip
    return per_pixel(probs)

  inputs = list_inputs(FLAGS.input)
  failed = []
  for path in inputs:
    t0 = time.perf_counter()
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
      image = images.read_image(path)
      _check_fits_run(path, image, norm)
    except errors.UserError as e:
      failed.append(path)
      print(f"FAILED {e}", file=sys.stderr)
      continue
    label = predict(image, stem)
    shown = images.to_rgb(image, rgb_bands)
    if background is not None:
      label, alpha = label[..., 0], label[..., 1]
      Image.fromarray(np.dstack([shown, alpha]), mode="RGBA").save(
        os.path.join(FLAGS.output, f"{stem}_cutout.png")
      )
    save_label_png(label, spec.palette, os.path.join(FLAGS.output, f"{stem}.png"))
    Image.fromarray(overlay(shown, label, spec.palette, FLAGS.alpha)).save(
      os.path.join(FLAGS.output, f"{stem}_overlay.jpg"), quality=90
    )
    counts = np.bincount(label.ravel(), minlength=spec.num_classes)
    top = ", ".join(
      f"{spec.class_names[c]} {100 * counts[c] / label.size:.0f}%"
      for c in counts.argsort()[::-1][:3]
      if counts[c]
    )
    print(f"{path}: {image.shape[1]}x{image.shape[0]} in {time.perf_counter() - t0:.1f}s ({top})")
  done = len(inputs) - len(failed)
  print(f"{done} of {len(inputs)} images predicted into {FLAGS.output}; {len(failed)} failed")
  if failed:
    sys.exit(1)


def _check_fits_run(path: str, image: np.ndarray, norm: preprocessing.Normalization) -> None:
  if image.shape[-1] != norm.channels or image.dtype != norm.dtype:
    raise errors.InvalidInput(
      f"{path}: {image.shape[-1]} bands of {image.dtype}; the run was trained on "
      f"{norm.channels} bands of {norm.dtype} (config.data.channels, dtype)"
    )


if __name__ == "__main__":
  define_flags()
  cli.run(main)
