"""Scores a trained run at full resolution: `python -m jaxseg.evaluate --workdir=DIR`.

Restores the best checkpoint (or `--checkpoint=latest` or a step) of a run,
predicts every image of a split at its original size (`--mode=whole`, or
`--mode=slide` with `--crop_size`/`--stride`), optionally averaging
multi-scale and flipped passes (`--scales=0.5,0.75,1,1.25,1.5,1.75 --flip`),
and scores the original labels, never resized: mIoU, and at the edges Boundary
IoU and trimap scores (`scoring.boundary`). Prints the per-class table,
writes it under `evaluation` in the run's `metrics.json`, and draws the
confusion matrix to `confusion_<split>.png` in the workdir.
"""

import os
import time

from absl import flags
from tqdm.auto import tqdm

from jaxseg import cli, files, inference
from jaxseg.data import pipeline, preprocessing
from jaxseg.scoring import boundary, metrics, pictures, tables, writers
from jaxseg.training import lock as workdir_lock
from jaxseg.training import runs

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  (from tests, notebooks or another tool) does not claim flag names."""
  cli.define_run_flags()
  cli.define_test_time_flags(crop_size=None)  # Default: the run's crop size.
  flags.DEFINE_string("split", None, "Split to score; default the run's validation split.")
  flags.DEFINE_integer("size_multiple", 32, "Whole mode pads images up to a multiple of this.")
  flags.DEFINE_integer("batch_size", 8, "Images per device call in plain whole mode.")
  flags.DEFINE_integer("limit", 0, "Score only the first N images (0: all).")


def main(argv):
  del argv
  cli.quiet_logging()
  # It writes metrics.json and a picture into the run: not beside a live writer.
  with workdir_lock.hold(FLAGS.workdir, "evaluate", create=False):
    evaluate_run(FLAGS.workdir)


def evaluate_run(workdir: str) -> None:
  """Scores the run in `workdir` as the flags say and writes the results there."""
  config, step, predict_fn = runs.load_predictor(workdir, FLAGS.checkpoint)
  spec, builder = pipeline.prepare(config)
  split = FLAGS.split or config.data.eval_split or spec.eval_split
  decoded, _ = pipeline.decoded_split(config, spec, builder, split)

  crop = FLAGS.crop_size or tuple(config.crop_size)
  stride = FLAGS.stride or inference.default_stride(crop)
  options = dict(
    mode=FLAGS.mode,
    scales=tuple(float(s) for s in FLAGS.scales),
    flip=FLAGS.flip,
    size_multiple=FLAGS.size_multiple,
    crop_size=crop,
    stride=stride,
  )

  plain = FLAGS.mode == "whole" and options["scales"] == (1.0,) and not FLAGS.flip
  foreground, threshold = inference.decision(config, spec.class_names)
  decide = lambda probs: inference.decide(probs, foreground, threshold)
  pad = preprocessing.from_config(config).pad

  def predict_many(images):
    if plain:  # Batched, images padded to a shared bucketed shape.
      batch = inference.whole_batch(predict_fn, images, FLAGS.size_multiple, pad)
      return [decide(p) for p in batch]
    return [decide(inference.predict_probs(predict_fn, im, **options, pad=pad)) for im in images]

  t0 = time.perf_counter()
  n = min(len(decoded), FLAGS.limit) if FLAGS.limit else len(decoded)
  edges = boundary.Counter(config, spec)
  with tqdm(total=n, desc="evaluate", unit="image") as progress:
    confusion = metrics.confusion_of(
      predict_many, decoded, spec.num_classes, spec.ignore_label,
      batch_size=FLAGS.batch_size if plain else 1, limit=FLAGS.limit, progress=progress.update,
      on_image=edges.add,
    )  # fmt: skip
  result = metrics.compute_metrics(confusion, foreground, threshold)
  result.update(edges.scores())
  print(
    f"\n{config.data.name}/{split} at step {step}, mode {FLAGS.mode}, scales "
    f"{options['scales']}{', flip' if FLAGS.flip else ''} ({time.perf_counter() - t0:.1f}s):\n"
    + tables.format_table(result, spec.class_names)
  )
  record = writers.to_json(result, spec.class_names, step)
  record.update(split=split, checkpoint=FLAGS.checkpoint, **{k: v for k, v in options.items()})
  writers.update_evaluation(os.path.join(workdir, "metrics.json"), record)
  picture = os.path.join(workdir, f"confusion_{split}.png")
  files.save_image(pictures.confusion_image(confusion, spec.class_names), picture)
  print(f"Wrote {os.path.join(workdir, 'metrics.json')} (evaluation) and {picture}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
