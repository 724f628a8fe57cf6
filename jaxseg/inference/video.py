"""Video in, segmented video out, streamed: `python -m jaxseg.predict --input=clip.mp4`.

Reading and writing go through PyAV, whose wheels carry FFmpeg and its codecs
(H.264 by libx264): no system ffmpeg. Frames stream through three stages in
their own threads: decoding, the model (several frames per device call) and
encoding, joined by bounded queues, so memory holds a few batches whatever the
clip's length, and decoding and encoding overlap with the model.

The overlay video keeps the input's size and frame timestamps (so its frame
rate, variable or not); per-frame label maps are palette PNGs as
`jaxseg.predict` writes for images.
"""

import contextlib
import dataclasses
import fractions
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from jaxseg import errors
from jaxseg.inference import outputs

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")

# `[N, H, W, 3]` uint8 frames -> `[N, H, W]` uint8 labels.
LabelFn = Callable[[np.ndarray], np.ndarray]


class VideoError(errors.InvalidInput):
  """A file that cannot be read or written as a video; the message says why."""


@dataclasses.dataclass
class Clip:
  """A video source: its frames as `(pts, [H, W, 3] uint8)` and what it declares.

  Attributes:
    name: the stem output files are named after.
    width, height: frame size.
    rate: average frame rate.
    time_base: unit of `pts`.
    num_frames: the container's frame count (0 when it does not say).
    frames: the decoded frames, in order.
  """

  name: str
  width: int
  height: int
  rate: fractions.Fraction
  time_base: fractions.Fraction
  num_frames: int
  frames: Iterator[tuple[int, np.ndarray]]


def is_video(path: str) -> bool:
  return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def open_video(path: str) -> Clip:
  """Opens a video file; raises `VideoError` naming it when it is not one."""
  import av

  try:
    container = av.open(path)
  except (av.FFmpegError, OSError) as e:
    raise VideoError(f"{path} is not a video FFmpeg can read: {e}") from None
  if not container.streams.video:
    container.close()
    raise VideoError(f"{path} has no video stream")
  stream = container.streams.video[0]
  stream.thread_type = "AUTO"  # Frame-parallel decoding.
  rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(30)
  time_base = stream.time_base or 1 / rate

  def frames() -> Iterator[tuple[int, np.ndarray]]:
    index = 0
    try:
      for frame in container.decode(stream):
        pts = frame.pts if frame.pts is not None else round(index / rate / time_base)
        yield pts, frame.to_ndarray(format="rgb24")
        index += 1
    except av.FFmpegError as e:
      raise VideoError(f"{path}: decoding failed after {index} frames: {e}") from None
    finally:
      container.close()

  return Clip(
    name=os.path.splitext(os.path.basename(path))[0],
    width=stream.codec_context.width,
    height=stream.codec_context.height,
    rate=fractions.Fraction(rate),
    time_base=fractions.Fraction(time_base),
    num_frames=stream.frames,
    frames=frames(),
  )


def open_frame_folder(path: str, paths: list[str], fps: float) -> Clip:
  """A folder of images (in name order) as a clip at `fps` frames per second."""
  from PIL import Image

  if not paths:
    raise VideoError(f"{path} has no PNG/JPEG frames")
  with Image.open(paths[0]) as im:
    width, height = im.size
  rate = fractions.Fraction(fps).limit_denominator(1001)

  def frames() -> Iterator[tuple[int, np.ndarray]]:
    for index, p in enumerate(paths):
      with Image.open(p) as im:
        frame = np.asarray(im.convert("RGB"))
      if frame.shape[:2] != (height, width):
        raise VideoError(
          f"{p} is {frame.shape[1]}x{frame.shape[0]}; the clip's frames are "
          f"{width}x{height} (from {os.path.basename(paths[0])}): a video has one size"
        )
      yield index, frame

  name = os.path.basename(os.path.normpath(path))
  return Clip(name, width, height, rate, 1 / rate, len(paths), frames())


class VideoWriter:
  """H.264 (libx264) MP4 of RGB frames at given timestamps.

  4:2:0 chroma, which every player reads, needs an even width and height;
  other sizes are written in 4:4:4 so that the video keeps the input's size.
  """

  def __init__(self, path: str, clip: Clip, quality: int = 20):
    import av

    self.container = av.open(path, mode="w", format="mp4")  # Whatever the file name.
    rate = clip.rate.limit_denominator(1001)  # Rate control's nominal rate.
    self.stream = self.container.add_stream("libx264", rate=rate)
    self.stream.width, self.stream.height = clip.width, clip.height
    self.even = clip.width % 2 == 0 and clip.height % 2 == 0
    self.stream.pix_fmt = "yuv420p" if self.even else "yuv444p"
    # Timestamps in the input's unit, not quantised to 1/rate: a variable
    # frame rate survives.
    self.stream.time_base = self.stream.codec_context.time_base = clip.time_base
    self.stream.options = {"crf": str(quality), "preset": "veryfast"}
    self.time_base = clip.time_base
    self._frame_type = av.VideoFrame

  def write(self, pts: int, rgb: np.ndarray) -> None:
    frame = self._frame_type.from_ndarray(rgb, format="rgb24")
    frame.pts, frame.time_base = pts, self.time_base
    self.container.mux(self.stream.encode(frame))

  def close(self) -> None:
    self.container.mux(self.stream.encode(None))  # Flush the encoder.
    self.container.close()


@dataclasses.dataclass
class Timing:
  """Where a clip's time went. Decoding and encoding run beside the model."""

  frames: int = 0
  wall_s: float = 0.0
  compile_s: float = 0.0
  decode_s: float = 0.0
  encode_s: float = 0.0
  model_ms: list = dataclasses.field(default_factory=list)  # Per frame, by batch.

  def summary(self) -> str:
    fps = self.frames / max(self.wall_s, 1e-9)
    p50, p90 = np.percentile(self.model_ms, [50, 90]) if self.model_ms else (0.0, 0.0)
    return (
      f"{self.frames} frames in {self.wall_s:.1f}s: {fps:.1f} frames/s end to end "
      f"(after {self.compile_s:.1f}s compiling); model {p50:.1f} ms/frame p50, "
      f"{p90:.1f} p90; decode {self.decode_s:.1f}s, encode {self.encode_s:.1f}s "
      "(beside the model)"
    )


_DONE = object()


def _produce(
  frames: Iterator, out: queue.Queue, timing: Timing, errors: list, stop: threading.Event
) -> None:
  """Decodes into `out` until the clip ends or `stop` is set; ends with `_DONE`
  (and an error in `errors`)."""
  try:
    while not stop.is_set():
      t0 = time.perf_counter()
      item = next(frames, _DONE)
      timing.decode_s += time.perf_counter() - t0
      out.put(item)
      if item is _DONE:
        return
  except BaseException as e:  # Handed to the main thread.
    errors.append(e)
  out.put(_DONE)


def segment_clip(
  clip: Clip,
  label_fn: LabelFn,
  *,
  batch_size: int,
  write: Callable[[list[int], np.ndarray, np.ndarray], None],
  progress: Callable[[int], None] = lambda n: None,
) -> Timing:
  """Streams `clip` through `label_fn` in batches of `batch_size` frames.

  `write(pts, frames, labels)` runs in the encoding thread for every batch
  (the last one may be smaller). Raises the decoder's or writer's error, if
  any, after the stages have stopped.
  """
  timing, errors = Timing(), []
  decoded: queue.Queue = queue.Queue(maxsize=2 * batch_size)
  labelled: queue.Queue = queue.Queue(maxsize=2)
  stop = threading.Event()
  decoder = threading.Thread(target=_produce, args=(clip.frames, decoded, timing, errors, stop))
  encoder = threading.Thread(target=_consume, args=(labelled, write, timing, errors))
  start = time.perf_counter()
  decoder.start()
  encoder.start()
  try:
    stages = (decoded, labelled, timing, errors, progress)
    start += _label_frames(clip, label_fn, batch_size, *stages)  # Compiling is not streaming.
  finally:
    labelled.put(_DONE)
    stop.set()
    while decoder.is_alive():  # Unblock a decoder waiting on a full queue.
      try:
        decoded.get(timeout=0.1)
      except queue.Empty:
        pass
    decoder.join()
    encoder.join()
  timing.wall_s = time.perf_counter() - start
  if errors:
    raise errors[0]
  if timing.frames == 0:
    raise VideoError(f"{clip.name}: the video has no frames")
  return timing


def _consume(labelled: queue.Queue, write, timing: Timing, errors: list) -> None:
  """Writes labelled batches until `_DONE`; after an error, only drains, so
  the model never blocks on a full queue."""
  while (item := labelled.get()) is not _DONE:
    if errors:
      continue
    t0 = time.perf_counter()
    try:
      write(*item)
    except BaseException as e:  # Handed to the main thread.
      errors.append(e)
    timing.encode_s += time.perf_counter() - t0


def _label_frames(clip, label_fn, batch_size, decoded, labelled, timing, errors, progress) -> float:
  """The model stage: batches of decoded frames -> `(pts, frames, labels)`
  into `labelled`. Returns the seconds the first call took (compilation)."""
  batch = np.zeros((batch_size, clip.height, clip.width, 3), np.uint8)
  finished, compile_s = False, 0.0
  while not finished and not errors:
    pts = []
    while len(pts) < batch_size:
      item = decoded.get()
      if item is _DONE:
        finished = True
        break
      pts.append(item[0])
      batch[len(pts) - 1] = item[1]
    if not pts:
      break
    t0 = time.perf_counter()
    # A short last batch runs padded: one compiled shape for the whole clip.
    # Copied: the encoder holds it while `batch` is refilled.
    labels = np.array(label_fn(batch)[: len(pts)])
    seconds = time.perf_counter() - t0
    if timing.frames == 0:
      timing.compile_s = compile_s = seconds
    else:
      timing.model_ms.append(1000 * seconds / len(pts))
    labelled.put((pts, batch[: len(pts)].copy(), labels))
    timing.frames += len(pts)
    progress(len(pts))
  return compile_s


def predict_clip(
  clip: Clip,
  label_fn: LabelFn,
  output: str,
  palette: np.ndarray,
  *,
  batch_size: int = 4,
  alpha: float = 0.5,
  label_frames: bool = False,
) -> tuple[str, Timing]:
  """`clip` segmented into `output/<name>_overlay.mp4` (and, with
  `label_frames`, one label PNG per frame in `output/<name>_labels/`), with a
  progress bar. Returns the video's path and where the time went.

  The video is written as `.<name>_overlay.mp4.writing` and renamed when
  complete, so a kill -9 never leaves a file under the final name. Stopped
  early (Ctrl-C, SIGTERM, an error), the frames done are closed into a
  playable `<name>_overlay_partial.mp4`, said in one line, and the
  interruption goes on.
  """
  from tqdm.auto import tqdm

  out_path = os.path.join(output, f"{clip.name}_overlay.mp4")
  writing = os.path.join(output, f".{clip.name}_overlay.mp4.writing")
  partial = os.path.join(output, f"{clip.name}_overlay_partial.mp4")
  label_dir = os.path.join(output, f"{clip.name}_labels") if label_frames else ""
  writer, all_pts = None, []

  def write(pts, frames, frame_labels):
    nonlocal writer
    if writer is None:  # Opened on the first frame: an empty clip leaves no file.
      writer = VideoWriter(writing, clip)
      if label_dir:
        os.makedirs(label_dir, exist_ok=True)
    for p, frame, label in zip(pts, frames, frame_labels, strict=True):
      writer.write(p, outputs.overlay(frame, label, palette, alpha))
      if label_dir:
        outputs.save_label_png(label, palette, os.path.join(label_dir, f"{len(all_pts):06d}.png"))
      all_pts.append(p)

  with tqdm(total=clip.num_frames or None, unit="frame", desc=clip.name) as bar:
    try:
      with _sigterm_as_interrupt():
        timing = segment_clip(
          clip, label_fn, batch_size=batch_size, write=write, progress=bar.update
        )
    except BaseException:
      bar.close()
      if writer is not None:
        _keep_partial(writer, writing, partial, len(all_pts), clip.num_frames)
      raise
    if writer is not None:
      writer.close()
      os.replace(writing, out_path)
  print(f"{out_path}: {timing.frames} frames" + (f", labels in {label_dir}" if label_dir else ""))
  _describe_timestamps(clip, all_pts)
  return out_path, timing


def _keep_partial(writer, writing: str, partial: str, done: int, total: int) -> None:
  """Closes a video stopped early into a playable file named as partial."""
  of = f" of {total}" if total else ""
  try:
    writer.close()
    os.replace(writing, partial)
  except Exception as e:  # The write that stopped it (a full disk) may stop this too.
    print(f"stopped after {done}{of} frames; {writing} could not be closed: {e}")
    return
  print(f"stopped: the {done}{of} frames done are in {partial} (partial)")


@contextlib.contextmanager
def _sigterm_as_interrupt():
  """SIGTERM (a job scheduler's stop) raises KeyboardInterrupt, as Ctrl-C
  does, so the frames done are kept; only in the main thread."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")

  previous = signal.signal(signal.SIGTERM, interrupt)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def _describe_timestamps(clip: Clip, pts: list[int]) -> None:
  """Says when the clip's frame rate varies or its size needs 4:4:4 chroma."""
  intervals = np.diff(pts) * float(clip.time_base) * 1000
  if len(intervals) and intervals.max() - intervals.min() > 1:
    print(
      f"variable frame rate: frames {intervals.min():.1f} to {intervals.max():.1f} ms apart; "
      "the overlay keeps every frame's timestamp"
    )
  if clip.width % 2 or clip.height % 2:
    print(f"odd frame size {clip.width}x{clip.height}: written in 4:4:4 chroma to keep it")


def write_demo_clip(path: str, seconds: float, height: int, width: int, fps: int = 30) -> int:
  """Writes a clip of the embedded dataset's shapes moving, for trying the
  video command; returns its frame count."""
  from jaxseg.data.builders import synthetic_shapes

  num_frames = max(1, round(seconds * fps))
  rate = fractions.Fraction(fps)
  clip = Clip(os.path.basename(path), width, height, rate, 1 / rate, num_frames, iter(()))
  writer = VideoWriter(path, clip)
  try:
    frames = synthetic_shapes.render_clip(0, num_frames, height, width)
    for index, (frame, _) in enumerate(frames):
      writer.write(index, frame)
  finally:
    writer.close()
  return num_frames
