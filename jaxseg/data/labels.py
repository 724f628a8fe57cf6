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


def bit_palette(n: int) -> np.ndarray:
  """Pascal VOC's colour map: class bits spread over the high bits of R, G, B.

  VOC's palette PNGs store class `c` with this colour; ADE20K and user
  datasets without a palette reuse it.
  """
  palette = np.zeros((n, 3), np.uint8)
  for c in range(n):
    code, r, g, b = c, 0, 0, 0
    for shift in range(7, -1, -1):
      r |= (code & 1) << shift
      g |= ((code >> 1) & 1) << shift
      b |= ((code >> 2) & 1) << shift
      code >>= 3
    palette[c] = (r, g, b)
  return palette


def lookup_table(pairs: dict[int, int], default: int = IGNORE_LABEL) -> np.ndarray:
  """256-entry table mapping stored label values to training ids; others -> `default`."""
  table = np.full(256, default, np.uint8)
  for stored, train_id in pairs.items():
    table[stored] = train_id
  return table


VOC_CLASSES = (
  "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
  "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
  "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_PALETTE = bit_palette(len(VOC_CLASSES))

# Cityscapes: the 19 evaluated classes, as (labelId, name, colour); train ids
# are their order, every other labelId is ignored.
_CITYSCAPES = (
  (7, "road", (128, 64, 128)),
  (8, "sidewalk", (244, 35, 232)),
  (11, "building", (70, 70, 70)),
  (12, "wall", (102, 102, 156)),
  (13, "fence", (190, 153, 153)),
  (17, "pole", (153, 153, 153)),
  (19, "traffic light", (250, 170, 30)),
  (20, "traffic sign", (220, 220, 0)),
  (21, "vegetation", (107, 142, 35)),
  (22, "terrain", (152, 251, 152)),
  (23, "sky", (70, 130, 180)),
  (24, "person", (220, 20, 60)),
  (25, "rider", (255, 0, 0)),
  (26, "car", (0, 0, 142)),
  (27, "truck", (0, 0, 70)),
  (28, "bus", (0, 60, 100)),
  (31, "train", (0, 80, 100)),
  (32, "motorcycle", (0, 0, 230)),
  (33, "bicycle", (119, 11, 32)),
)
CITYSCAPES_CLASSES = tuple(name for _, name, _ in _CITYSCAPES)
CITYSCAPES_PALETTE = np.array([colour for _, _, colour in _CITYSCAPES], np.uint8)
CITYSCAPES_LABEL_MAP = lookup_table({label_id: i for i, (label_id, _, _) in enumerate(_CITYSCAPES)})

# ADE20K (SceneParsing, 150 classes). Stored 0 is "other" and is ignored; the
# rest shift down by one ("reduce zero label").
ADE20K_CLASSES = (
  "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
  "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
  "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
  "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
  "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
  "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
  "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
  "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
  "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
  "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
  "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
  "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
  "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
  "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
  "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
  "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
  "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
  "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
ADE20K_PALETTE = bit_palette(len(ADE20K_CLASSES) + 1)[1:]
# Stored 151..255 map to 150..254: out of range, so the audit reports them.
ADE20K_LABEL_MAP = lookup_table({v: (v - 1 if v else IGNORE_LABEL) for v in range(256)})

# Oxford-IIIT Pet trimaps: 1 pet, 2 background, 3 the uncertain border.
OXFORD_PET_CLASSES = ("pet", "background", "border")
OXFORD_PET_PALETTE = np.array([[220, 20, 60], [0, 0, 0], [255, 200, 0]], np.uint8)
OXFORD_PET_LABEL_MAP = lookup_table({1: 0, 2: 1, 3: 2})
