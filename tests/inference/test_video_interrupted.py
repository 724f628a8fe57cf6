"""A video stopped before its end never leaves a file under `*_overlay.mp4`:
kill -9 leaves only the hidden `.writing` file; Ctrl-C and SIGTERM keep the
frames done, playable, under `*_overlay_partial.mp4`, said in one line."""

import fractions
import os
import signal
import subprocess
import sys

import av
import numpy as np
import pytest

from jaxseg.inference import video
from tests.helpers import ROOT

PALETTE = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)


def _clip(num_frames: int) -> video.Clip:
  frames = ((i, np.full((16, 16, 3), 4 * i, np.uint8)) for i in range(num_frames))
  return video.Clip("clip", 16, 16, fractions.Fraction(10), fractions.Fraction(1, 10),
                    num_frames, frames)  # fmt: skip


def _frames_in(path) -> int:
  with av.open(str(path)) as container:
    return sum(1 for _ in container.decode(container.streams.video[0]))


def test_ctrl_c_keeps_the_frames_done_under_a_partial_name(tmp_path, capsys):
  calls = []

  def label_fn(batch):
    calls.append(1)
    if len(calls) == 4:
      raise KeyboardInterrupt
    return (batch[..., 0] > 100).astype(np.int32)

  with pytest.raises(KeyboardInterrupt):
    video.predict_clip(_clip(40), label_fn, str(tmp_path), PALETTE, batch_size=2)
  assert sorted(os.listdir(tmp_path)) == ["clip_overlay_partial.mp4"]
  done = _frames_in(tmp_path / "clip_overlay_partial.mp4")
  assert done == 6  # Three batches of two were labelled and written.
  out = capsys.readouterr().out
  assert f"stopped: the 6 of 40 frames done are in {tmp_path}/clip_overlay_partial.mp4" in out


def test_a_finished_clip_is_renamed_into_place(tmp_path):
  label_fn = lambda batch: (batch[..., 0] > 100).astype(np.int32)
  path, _ = video.predict_clip(_clip(12), label_fn, str(tmp_path), PALETTE, batch_size=4)
  assert sorted(os.listdir(tmp_path)) == ["clip_overlay.mp4"] and _frames_in(path) == 12


SLOW_CLIP = """
import fractions, sys, time
import numpy as np
from jaxseg.inference import video
frames = ((i, np.full((16, 16, 3), i % 250, np.uint8)) for i in range(2000))
clip = video.Clip("clip", 16, 16, fractions.Fraction(10), fractions.Fraction(1, 10), 2000, frames)
def label_fn(batch):
  print("batch", flush=True)
  time.sleep(0.02)
  return (batch[..., 0] > 100).astype(np.int32)
video.predict_clip(clip, label_fn, sys.argv[1], np.array([[0, 0, 0], [255, 0, 0]], np.uint8),
                   batch_size=2)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_video_leaves_nothing_under_the_final_name(sig, tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT}
  command = [sys.executable, "-c", SLOW_CLIP, str(tmp_path)]
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             text=True)  # fmt: skip
  for _ in range(10):  # Ten batches labelled: the video file is open.
    assert process.stdout.readline().strip() == "batch"
  process.send_signal(sig)
  out, _ = process.communicate(timeout=60)
  names = sorted(os.listdir(tmp_path))
  assert not [n for n in names if n.endswith("_overlay.mp4")], names
  if sig == signal.SIGKILL:
    assert names == [".clip_overlay.mp4.writing"]  # Never under the final name.
  else:
    assert names == ["clip_overlay_partial.mp4"] and "(partial)" in out
    assert 18 <= _frames_in(tmp_path / "clip_overlay_partial.mp4") < 2000
