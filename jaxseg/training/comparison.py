"""Several runs on one budget, side by side (`jaxseg.compare`): each trained
(or resumed) in its own workdir, then one table (mIoU, and Boundary IoU and the
trimap at the edges), `comparison.json`, `comparison.png` and `trimap.png`."""

import json
import os

import ml_collections

from jaxseg.scoring import pictures, tables, writers
from jaxseg.training import loop


def compare(runs: list[tuple[str, ml_collections.ConfigDict]], workdir: str) -> dict[str, dict]:
  """Trains each `(name, config)` in `workdir/name` (resuming if it already
  has), prints the per-class table of their final evaluations, writes
  `comparison.json` and the learning curves `comparison.png` into `workdir`.

  Returns:
    name -> the run's latest `metrics.json` record.
  """
  results, curves = {}, {}
  for name, config in runs:
    run_dir = os.path.join(workdir, name)
    print(f"\n=== {name}: {config.num_train_steps} steps of {config.batch_size} ({run_dir})")
    loop.train_and_evaluate(config, run_dir)
    with open(os.path.join(run_dir, "metrics.json")) as f:
      results[name] = json.load(f)["latest"]
    curves[name] = writers.read_scalars(run_dir)
  table = tables.format_comparison(list(results), list(results.values()))
  print("\nFinal validation results, IoU per class (%):\n" + table)
  with open(os.path.join(workdir, "comparison.json"), "w") as f:
    json.dump(results, f, indent=2)
  picture = os.path.join(workdir, "comparison.png")
  pictures.learning_curves(curves, picture)
  print(f"Learning curves: {picture}")
  if all("trimap" in r for r in results.values()):
    trimap = os.path.join(workdir, "trimap.png")
    pictures.trimap_curves(results, trimap)
    print(f"Scores near the edges (trimap): {trimap}")
  return results
