"""Every export is checked as it is written: run by its own runtime, its
logits equal the training code's."""

import numpy as np

from jaxseg.export.stablehlo import SIZE_MULTIPLE
from jaxseg.inference import pad_to

# Largest |logit difference| an export may show against the training code,
# relative to the largest |logit| (or 1 if that is smaller).
TOLERANCE = 1e-3


def check(run, predict_fn, norm, shapes, name: str) -> dict:
  """Runs the export on random images of each `(batch, h, w)` in `shapes` and
  compares with the training code's logits (whole images padded to a multiple
  of SIZE_MULTIPLE, cropped back). Float32 rounding grows with the logits, so
  the bound is TOLERANCE times the largest |logit| (at least 1).

  Returns what `metadata.json` records of the check; raises RuntimeError if
  the export differs by more."""
  rng = np.random.default_rng(0)
  worst, scale = 0.0, 1.0
  for n, h, w in shapes:
    top = np.iinfo(norm.dtype).max
    images = rng.integers(0, top + 1, (n, h, w, norm.channels)).astype(norm.dtype)
    m = SIZE_MULTIPLE
    height, width = -(-h // m) * m, -(-w // m) * m
    padded = np.stack([pad_to(im, height, width, norm.pad) for im in images])
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
