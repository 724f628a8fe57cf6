"""Class names and colour palettes of the datasets jaxseg knows, as data.

A palette is a `[num_classes, 3]` uint8 array: row `c` is the RGB colour used to
draw class `c` in label PNGs and prediction overlays. The ignore label (255) is
drawn white.
"""

import numpy as np

IGNORE_LABEL = 255
IGNORE_COLOUR = (255, 255, 255)

SYNTHETIC_SHAPES_CLASSES = ("background", "circle", "square", "triangle", "star")
SYNTHETIC_SHAPES_PALETTE = np.array(
  [
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [255, 225, 25],
  ],
  dtype=np.uint8,
)


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
  """Maps a label map to RGB colours.

  Args:
    label: `[H, W]` integer class indices; `IGNORE_LABEL` is allowed.
    palette: `[C, 3]` uint8 colours.

  Returns:
    `[H, W, 3]` uint8 image.
  """
  lut = np.zeros((256, 3), np.uint8)
  lut[: len(palette)] = palette
  lut[IGNORE_LABEL] = IGNORE_COLOUR
  return lut[np.asarray(label, np.int64).clip(0, 255)]
