"""Video in, segmented video out (`jaxseg.predict --input=clip.mp4`, `jaxseg.video`):
frame count, size, frame rate and timestamps kept, label frames equal to
per-image predictions, and a clear error for each kind of bad input."""

import fractions

import av
import numpy as np
import pytest
from PIL import Image

from jaxseg import inference
from jaxseg.data.builders import synthetic_shapes
from jaxseg.inference import video
from jaxseg.training import runs
from tests.helpers import run_command


def _write_clip(path, frames, fps=25, pts=None):
  """Moving shapes of the embedded dataset as an H.264 file; `pts` in 1/fps
  units (default: one per frame)."""
  height, width = frames[0].shape[:2]
  rate = fractions.Fraction(fps)
  clip = video.Clip("clip", width, height, rate, fractions.Fraction(1, 1000), len(frames), iter(()))
  writer = video.VideoWriter(str(path), clip)
  for i, frame in enumerate(frames):
    writer.write(round(1000 * (pts[i] if pts else i) / fps), frame)
  writer.close()


def _decode(path):
  """`(rate, pts in seconds, frames)` of a video file as PyAV reads it."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    frames, seconds = [], []
    for frame in container.decode(stream):
      frames.append(frame.to_ndarray(format="rgb24"))
      seconds.append(float(frame.pts * stream.time_base))
    return stream.average_rate, seconds, frames


def _shapes(num_frames, height, width):
  return [f for f, _ in synthetic_shapes.render_clip(0, num_frames, height, width)]


def _predict(workdir, clip, out, *flags):
  return run_command(
    "jaxseg.predict", f"--workdir={workdir}", f"--input={clip}", f"--output={out}", *flags
  )


def test_clip_becomes_an_overlay_video_and_label_frames_equal_per_image_predictions(
  trained_run, tmp_path
):
  workdir, _ = trained_run
  _write_clip(tmp_path / "clip.mp4", _shapes(11, 48, 64), fps=25)
  out = _predict(workdir, tmp_path / "clip.mp4", tmp_path / "out", "--label_frames", "--batch=4")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "11 frames in" in out.stdout and "frames/s end to end" in out.stdout
  assert "ms/frame p50" in out.stdout and "decode" in out.stdout

  rate, seconds, overlays = _decode(tmp_path / "out" / "clip_overlay.mp4")
  assert rate == 25 and len(overlays) == 11 and overlays[0].shape == (48, 64, 3)
  np.testing.assert_allclose(seconds, np.arange(11) / 25, atol=1e-3)
  # The model saw the decoded frames: per-image predictions of those frames
  # (a batch of one, the image path's padding) equal the video's label frames.
  _, _, frames = _decode(tmp_path / "clip.mp4")
  _, _, predict_fn = runs.load_predictor(workdir, "best")
  for i, frame in enumerate(frames):
    saved = Image.open(tmp_path / "out" / "clip_labels" / f"{i:06d}.png")
    assert saved.mode == "P"
    expected = inference.whole(predict_fn, frame).argmax(-1)
    np.testing.assert_array_equal(np.asarray(saved), expected, err_msg=f"frame {i}")


def test_odd_sizes_and_variable_frame_rate_are_kept(trained_run, tmp_path):
  workdir, _ = trained_run
  # Frames at 0, 1, 2, 4, 5, 8 thirtieths of a second: a variable frame rate.
  pts = [0, 1, 2, 4, 5, 8]
  _write_clip(tmp_path / "odd.mp4", _shapes(6, 37, 53), fps=30, pts=pts)
  out = _predict(workdir, tmp_path / "odd.mp4", tmp_path / "out", "--batch=4")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "variable frame rate" in out.stdout and "odd frame size 53x37" in out.stdout
  _, seconds, overlays = _decode(tmp_path / "out" / "odd_overlay.mp4")
  assert len(overlays) == 6 and overlays[0].shape == (37, 53, 3)
  np.testing.assert_allclose(seconds, np.array(pts) / 30, atol=1e-3)


def test_a_folder_of_frames_is_a_clip_at_the_given_rate(trained_run, tmp_path):
  workdir, _ = trained_run
  frames = tmp_path / "frames"
  frames.mkdir()
  for i, frame in enumerate(_shapes(5, 32, 40)):
    Image.fromarray(frame).save(frames / f"{i:03d}.png")
  out = _predict(workdir, frames, tmp_path / "out", "--fps=12")
  assert out.returncode == 0, out.stderr[-3000:]
  rate, _, overlays = _decode(tmp_path / "out" / "frames_overlay.mp4")
  assert rate == 12 and len(overlays) == 5
  # A frame of another size is named.
  Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(frames / "999.png")
  out = _predict(workdir, frames, tmp_path / "out2", "--fps=12")
  assert out.returncode == 2 and "error: " in out.stderr and "999.png is 10x10" in out.stderr


def _empty_video(path):
  """An MP4 that declared a video stream and got no frame."""
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()


@pytest.mark.parametrize(
  "make,message",
  [
    (lambda p: p.write_bytes(b"this is not a video"), "is not a video FFmpeg can read"),
    (_empty_video, "has no video stream"),  # FFmpeg drops a stream without frames.
  ],
  ids=["not-a-video", "empty"],
)
def test_bad_videos_get_one_clear_error(trained_run, tmp_path, make, message):
  workdir, _ = trained_run
  make(tmp_path / "bad.mp4")
  out = _predict(workdir, tmp_path / "bad.mp4", tmp_path / "out")
  assert out.returncode == 2
  assert "error: " in out.stderr and message in out.stderr, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert not (tmp_path / "out" / "bad_overlay.mp4").exists()


def test_a_clip_without_frames_is_an_error_not_an_empty_video():
  clip = video.Clip("c", 8, 8, fractions.Fraction(10), fractions.Fraction(1, 10), 0, iter(()))
  written = []
  with pytest.raises(video.VideoError, match="c: the video has no frames"):
    video.segment_clip(clip, lambda b: b[..., 0], batch_size=2, write=written.append)
  assert not written


def test_streaming_bounds_the_frames_in_flight():
  # A clip longer than the queues: the decoder never runs more than the
  # queues' worth of frames ahead of the model.
  decoded, in_model = [0], []

  def frames():
    for i in range(40):
      decoded[0] += 1
      yield i, np.full((8, 8, 3), i, np.uint8)

  def label_fn(batch):
    in_model.append(decoded[0])
    return batch[..., 0]

  written = []
  clip = video.Clip("c", 8, 8, fractions.Fraction(10), fractions.Fraction(1, 10), 40, frames())
  timing = video.segment_clip(
    clip, label_fn, batch_size=4, write=lambda pts, f, lb: written.extend(lb[:, 0, 0])
  )
  assert timing.frames == 40 and written == list(range(40))
  # In the model call of batch k, the decoder is at most 4 + 2 * 4 frames ahead.
  assert all(d <= 4 * (k + 1) + 2 * 4 + 1 for k, d in enumerate(in_model))
