"""Every export is checked as it is written: run by its own runtime, its
logits equal the training code's."""

import numpy as np

from jaxseg.export.stablehlo import SIZE_MULTIPLE
from jaxseg.inference import pad_to

# Largest |logit difference| an export may show against the training code,
# relative to the largest |logit| (or 1 if that is smaller) ...
TOLERANCE = 1e-3
# ... at all but this share of the pixels: SegNet's unpooling puts a value
# where its 2×2 window's maximum was, and two near-equal maxima (1e-7 apart)
# may swap under another runtime's rounding, moving that value one pixel. A
# systematic error (a wrong border, padding, resize) touches far more pixels.
MAX_SHARE_BEYOND = 1e-3


def check(run, predict_fn, norm, shapes, name: str) -> dict:
  """Runs the export on random images of each `(batch, h, w)` in `shapes` and
  compares with the training code's logits (whole images padded to a multiple
  of SIZE_MULTIPLE, cropped back). Float32 rounding grows with the logits, so
  the bound is TOLERANCE times the largest |logit| (at least 1), at all but
  MAX_SHARE_BEYOND of the pixels.

  Returns what `metadata.json` records of the check; raises RuntimeError if
  the export differs by more."""
  rng = np.random.default_rng(0)
  worst, scale, per_pixel = 0.0, 1.0, []
  for n, h, w in shapes:
    top = np.iinfo(norm.dtype).max
    images = rng.integers(0, top + 1, (n, h, w, norm.channels)).astype(norm.dtype)
    m = SIZE_MULTIPLE
    height, width = -(-h // m) * m, -(-w // m) * m
    padded = np.stack([pad_to(im, height, width, norm.pad) for im in images])
    expected = predict_fn(padded)[:, :h, :w]
    per_pixel.append(np.abs(run(images) - expected).max(-1).ravel())
    worst = max(worst, float(per_pixel[-1].max()))
    scale = max(scale, float(np.abs(expected).max()))
  beyond = float(np.mean(np.concatenate(per_pixel) > TOLERANCE * scale))
  print(
    f"{name}: worst |logit difference| against the training code {worst:.2e} "
    f"(largest |logit| {scale:.3g}) on {shapes}"
    + (f"; beyond {TOLERANCE:g} × that at {100 * beyond:.3f}% of the pixels" if beyond else "")
  )
  if beyond > MAX_SHARE_BEYOND:
    raise RuntimeError(
      f"{name} export differs from the training code by up to {worst:.2e}, by more than "
      f"{TOLERANCE:g} × the largest |logit| ({scale:.3g}) at {100 * beyond:.2f}% of the "
      f"pixels (at most {100 * MAX_SHARE_BEYOND:g}% may)"
    )
  return {"shapes": [list(s) for s in shapes], "max_abs_diff": worst, "max_abs_logit": scale,
          "share_beyond_tolerance": beyond}  # fmt: skip
