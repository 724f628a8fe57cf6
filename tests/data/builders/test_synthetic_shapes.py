import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data import labels
from jaxseg.data.builders import synthetic_shapes
from jaxseg.scoring import metrics

NUM_CLASSES = len(labels.SYNTHETIC_SHAPES_CLASSES)


def test_rendering_is_deterministic_per_example():
  a = synthetic_shapes.render_example(0, 0, 5, 64, 5)
  b = synthetic_shapes.render_example(0, 0, 5, 64, 5)
  c = synthetic_shapes.render_example(0, 0, 6, 64, 5)
  d = synthetic_shapes.render_example(0, 1, 5, 64, 5)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])


def test_every_class_appears_and_labels_are_in_range():
  masks = [synthetic_shapes.render_example(0, 0, i, 64, 5)[1] for i in range(40)]
  counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=NUM_CLASSES)
  assert len(counts) == NUM_CLASSES and np.all(counts > 0)


def test_colour_alone_does_not_solve_it():
  # The best a per-pixel colour classifier can do: for each quantised colour,
  # predict the class most often seen with it (fit on the same pixels it is
  # scored on, so this is generous to it).
  examples = [synthetic_shapes.render_example(0, 0, i, 64, 5) for i in range(60)]
  images = np.stack([e[0] for e in examples]).reshape(-1, 3) // 32
  masks = np.stack([e[1] for e in examples]).ravel()
  colour = images[:, 0] * 64 + images[:, 1] * 8 + images[:, 2]
  table = np.zeros((512, NUM_CLASSES), np.int64)
  np.add.at(table, (colour, masks), 1)
  predictions = table.argmax(axis=1)[colour]
  confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
  np.add.at(confusion, (masks, predictions), 1)
  assert metrics.compute_metrics(confusion)["miou"] < 0.4


def test_builder_writes_array_record_splits(data_dir):
  builder = tfds.builder("synthetic_shapes/tiny", data_dir=data_dir)
  assert builder.info.splits["train"].num_examples == 48
  assert builder.info.splits["validation"].num_examples == 20
  assert list(builder.info.metadata["class_names"]) == list(labels.SYNTHETIC_SHAPES_CLASSES)
  source = builder.as_data_source("validation")
  example = source[3]
  assert example["image"].shape == (64, 64, 3) and example["image"].dtype == np.uint8
  assert example["segmentation_mask"].shape == (64, 64, 1)
  # What was written is what the renderer produces (TFDS shuffles record order).
  rendered = [synthetic_shapes.render_example(0, 1, i, 64, 5) for i in range(20)]
  assert any(np.array_equal(example["image"], r[0]) for r in rendered)


def test_large_variant_is_the_default_recipe_at_twice_the_size(data_dir):
  # Nothing is generated: the builder's info and the renderer at its size.
  info = tfds.builder("synthetic_shapes/large", data_dir=data_dir).info
  assert info.features["image"].shape == (192, 192, 3)
  config = tfds.builder("synthetic_shapes/large", data_dir=data_dir).builder_config
  assert (config.num_train, config.num_validation) == (4000, 500)
  # Shape sizes are fractions of the image: most scenes come out as the
  # default's, twice as large.
  agree = [
    np.mean(
      synthetic_shapes.render_example(0, 1, i, 192, 4)[1][::2, ::2]
      == synthetic_shapes.render_example(0, 1, i, 96, 4)[1]
    )
    for i in range(1, 5)
  ]
  assert min(agree) > 0.98
