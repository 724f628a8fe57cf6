"""onnxruntime as the engine of `jaxseg.predict` (`--engine=onnxruntime`).

On some CPUs onnxruntime runs a network faster than XLA (its convolution
kernels and fusions; see README, Real time). This engine runs the run's own
ONNX export (`jaxseg.export --format=onnx`, checked against the training code
as it is written) behind the same interfaces as the jitted forward pass: a
`PredictFn` (`[N, H, W, bands] -> float32 logits`) for images and a label
function for video frames, so every mode, output and summary is unchanged.

The export is made on first use into `<workdir>/onnx/step_<N>/` and reused.
An export that takes any height and width serves every image; a network that
needs fixed shapes (global pooling and resizes by constant factors) is
exported once per padded image size, under `<H>x<W>/`. Each export is written
to a temporary folder and renamed into place, so an interrupted one is never
mistaken for a finished one.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from jaxseg import errors
from jaxseg.export import exporter, onnx_format
from jaxseg.inference import forward

ENGINES = ("jit", "onnxruntime")


class OnnxEngine:
  """The run's ONNX export(s) in onnxruntime, one session per export.

  Attributes:
    folder: `<workdir>/onnx/step_<step>`, where the exports live.
  """

  def __init__(self, workdir: str, step: int, threads: int | None = None):
    try:
      import onnxruntime  # noqa: F401 - only to say what is missing, early.
    except ImportError:
      raise errors.InvalidInput(
        "--engine=onnxruntime needs onnxruntime: pip install onnxruntime"
      ) from None
    self.workdir, self.step = workdir, step
    self.folder = os.path.join(workdir, "onnx", f"step_{step}")
    self.threads = threads or len(os.sched_getaffinity(0))
    self._sessions: dict[tuple[int, int] | None, object] = {}

  def session(self, height: int, width: int):
    """The session that runs images of `height` × `width` (padded sizes)."""
    if None in self._sessions:  # An export of any size serves them all.
      return self._sessions[None]
    if (height, width) not in self._sessions:
      path, symbolic = self._export(height, width)
      key = None if symbolic else (height, width)
      self._sessions[key] = onnx_format.session(path, self.threads)
      return self._sessions[key]
    return self._sessions[(height, width)]

  def _export(self, height: int, width: int) -> tuple[str, bool]:
    """The export for this size (made now if needed): `(model.onnx, symbolic)`."""
    sized = os.path.join(self.folder, f"{height}x{width}")
    for folder in (self.folder, sized):
      if _finished(folder):
        return os.path.join(folder, "model.onnx"), folder == self.folder
    print(f"onnxruntime: exporting step {self.step} of {self.workdir} to ONNX ({height}x{width})")
    os.makedirs(self.folder, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(self.folder))
    try:
      exporter.export_run(
        self.workdir, partial, which=str(self.step), size=(height, width), formats=("onnx",)
      )
      with open(os.path.join(partial, "metadata.json")) as f:
        symbolic = json.load(f)["formats"]["onnx"]["symbolic_size"]
      final = self.folder if symbolic else sized
      if symbolic:  # Only finished exports stand beside it.
        shutil.rmtree(self.folder)
      os.replace(partial, final)
    finally:
      shutil.rmtree(partial, ignore_errors=True)
    return os.path.join(final, "model.onnx"), symbolic

  def predict_fn(self) -> forward.PredictFn:
    """`[N, H, W, bands] -> float32 [N, H, W, C]` logits, as `make_predict_fn`."""

    def run(images: np.ndarray) -> np.ndarray:
      session = self.session(*images.shape[1:3])
      return session.run(None, {"images": np.ascontiguousarray(images)})[0]

    return run

  def label_fn(
    self, size_multiple: int = 32, foreground: int | None = None, threshold: float = 0.5,
    pad=None,
  ) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """`uint8 [N, h, w, 3] -> uint8 [N, h, w]` labels, as `make_label_fn`:
    frames padded up to a multiple of `size_multiple` with `pad`, labels
    cropped back, decided by `forward.decide_logits`."""
    run, m = self.predict_fn(), max(1, size_multiple)

    def labels(frames: np.ndarray) -> np.ndarray:
      n, h, w, c = frames.shape
      height, width = -(-h // m) * m, -(-w // m) * m
      if (height, width) != (h, w):
        padded = np.empty((n, height, width, c), frames.dtype)
        padded[...] = 0 if pad is None else pad
        padded[:, :h, :w] = frames
        frames = padded
      logits = run(frames)[:, :h, :w]
      return forward.decide_logits(logits, foreground, threshold).astype(np.uint8)

    return labels


def _finished(folder: str) -> bool:
  """Whether `folder` holds a whole export (metadata.json is written last)."""
  return os.path.exists(os.path.join(folder, "metadata.json"))
