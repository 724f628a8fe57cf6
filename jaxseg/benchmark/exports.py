"""CPU latency of each export format: `python -m jaxseg.benchmark --mode=exports`.

    python -m jaxseg.benchmark --mode=exports --config=configs/default.py \\
        --config=configs/psp.py:resnet50 --sizes=512x512 \\
        --formats=stablehlo,onnx,savedmodel,tflite --num_classes=21

For each config, the network (randomly initialised: latency does not depend
on the weights) is exported in each format at the size, each export checked
against the training code as `jaxseg.export` does, then run on one image by
its own runtime: ms/image p50 and p90, side by side with jaxseg's own jitted
forward (`inference.make_predict_fn`, oneDNN convolutions where built).
Each runtime is timed in a fresh process of its own, so that no format's
threads or libraries slow another's; each is given the machine's cores as
its threads (TFLite runs its default XNNPACK delegate). A format that fails
is one `error:` line naming the config and the format; the others go on.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import errors, inference
from jaxseg.data import get_dataset_spec, preprocessing
from jaxseg.export import exporter, onnx_format, parity, stablehlo, tf_formats
from jaxseg.models import create_model

FORMATS = exporter.FORMATS
RUNTIMES = {
  "jaxseg": "jaxseg jit (make_predict_fn)",
  "stablehlo": "StableHLO (jax.export)",
  "onnx": "ONNX (onnxruntime)",
  "savedmodel": "SavedModel (TensorFlow)",
  "tflite": "TFLite (LiteRT, XNNPACK)",
}


def _timed(run: Callable[[np.ndarray], object], image, steps: int, warmup: int) -> dict:
  for _ in range(warmup):
    run(image)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run(image)
    times.append(1000 * (time.perf_counter() - start))
  return {"ms_p50": float(np.median(times)), "ms_p90": float(np.percentile(times, 90))}


def _runner(fmt: str, model, variables, norm, size, out_dir: str, predict_fn):
  """`run(images) -> logits` for `fmt`, exported into `out_dir` and checked
  against `predict_fn` on the way."""
  threads = os.cpu_count()
  if fmt == "stablehlo":
    exported, _ = stablehlo.stablehlo_export(model, variables, norm, size, None)
    run = lambda images: np.asarray(exported.call(images))
  elif fmt == "onnx":
    onnx_format.save_onnx(model, variables, norm, out_dir, size)
    session = onnx_format.session(os.path.join(out_dir, "model.onnx"), threads)
    run = lambda images: session.run(None, {"images": images})[0]
  elif fmt == "savedmodel":
    import tensorflow as tf

    tf_formats.save_savedmodel(model, variables, norm, out_dir, size)
    loaded = tf.saved_model.load(os.path.join(out_dir, "savedmodel"))
    run = lambda images: loaded.serve(tf.constant(images)).numpy()
  else:
    info = tf_formats.save_tflite(model, variables, norm, out_dir, size)
    # The tile model: what serving runs at the export's size.
    tile = info.get("tile_path", info["path"])
    run = tf_formats.tflite_runner(out_dir, (1, *size, norm.channels), threads, tile)

  parity.check(run, predict_fn, norm, [(1, *size)], fmt)
  return run


def measure(
  name: str,
  config: ml_collections.ConfigDict,
  size: tuple[int, int],
  formats: Sequence[str],
  *,
  steps: int,
  warmup: int,
  num_classes: int | None,
) -> list[dict]:
  """One row per runtime (jaxseg's jitted forward first) for a config, each
  timed in a process of its own: runtimes in one process disturb each other
  (thread pools that spin, TensorFlow's start-up), so a format's figure is
  the one it has alone. A format that fails is a row with its `error`."""
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise errors.InvalidInput(f"--formats: {', '.join(unknown)} not among {', '.join(FORMATS)}")
  rows = []
  for runtime in ("jaxseg", *formats):
    row = time_in_own_process(
      name, config, size, runtime, steps=steps, warmup=warmup, num_classes=num_classes
    )
    if "error" in row:
      print(f"error: {row['error']}", file=sys.stderr, flush=True)
    else:
      print(f"  {name} {runtime}: {row['ms_p50']:.1f} ms", flush=True)
    rows.append(row)
  return rows


_RESULT = "jaxseg-export-timing: "  # Marks the worker's result line.


def time_in_own_process(name, config, size, runtime, *, steps, warmup, num_classes) -> dict:
  """`time_runtime` of `runtime` (jaxseg or a format) for `config` in a fresh
  Python (`python -m jaxseg.benchmark.exports`): its row, or `error`."""
  request = {
    "name": name, "config": json.loads(config.to_json_best_effort()), "size": list(size),
    "steps": steps, "warmup": warmup, "num_classes": num_classes, "runtime": runtime,
  }  # fmt: skip
  done = subprocess.run(
    [sys.executable, "-m", "jaxseg.benchmark.exports"], input=json.dumps(request),
    capture_output=True, text=True, check=False,
  )  # fmt: skip
  lines = done.stdout.splitlines()
  for line in lines:  # The worker's progress (the parity check's line, say).
    if not line.startswith(_RESULT):
      print(line, flush=True)
  results = [line for line in lines if line.startswith(_RESULT)]
  if not results:
    raise RuntimeError(
      f"timing {request['runtime']} of {request['name']} ended without a result "
      f"(exit {done.returncode}):\n{done.stderr[-3000:]}"
    )
  return json.loads(results[-1][len(_RESULT) :])


def time_runtime(request: dict) -> dict:
  """The worker's side: builds the config's network (random weights: latency
  does not depend on them), exports it in `request["runtime"]`'s format
  (checked against the training code) and times it on one image."""
  config = ml_collections.ConfigDict(request["config"])
  size, runtime, name = tuple(request["size"]), request["runtime"], request["name"]
  num_classes = request["num_classes"] or get_dataset_spec(config.data).num_classes
  model = create_model(config, num_classes)
  norm = preprocessing.from_config(config)
  probe = jnp.zeros((1, *size, norm.channels), jnp.float32)
  variables = jax.jit(lambda: model.init(jax.random.key(0), probe, train=False))()
  params = int(sum(x.size for x in jax.tree.leaves(variables["params"])))
  predict_fn = inference.make_predict_fn(model, variables, norm)
  image = np.random.default_rng(0).integers(0, 256, (1, *size, norm.channels)).astype(norm.dtype)
  row = {"name": name, "params": params, "size": list(size), "num_classes": num_classes,
         "runtime": RUNTIMES[runtime]}  # fmt: skip
  with tempfile.TemporaryDirectory() as out_dir:
    run = predict_fn
    if runtime != "jaxseg":
      with exporter.failing_as_one_line(name, runtime):
        run = _runner(runtime, model, variables, norm, size, out_dir, predict_fn)
    return {**row, **_timed(run, image, request["steps"], request["warmup"])}


def format_table(rows: list[dict]) -> str:
  """A markdown table: one row per config and runtime."""
  lines = ["| config | params | runtime | size | ms/image p50 | p90 |", "|---|---|---|---|---|---|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['name']} | | {r['runtime']} | | failed (see above) | |")
      continue
    lines.append(
      f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['runtime']} | "
      f"{r['size'][0]}×{r['size'][1]} | {r['ms_p50']:.1f} | {r['ms_p90']:.1f} |"
    )
  return "\n".join(lines)


def _worker() -> None:
  """`python -m jaxseg.benchmark.exports`: one `time_runtime` request on stdin,
  its row (or its one-line error) on the last line of stdout."""
  import jaxseg
  from jaxseg import cli

  jaxseg.set_xla_flags()
  cli.quiet_logging()
  request = json.load(sys.stdin)
  try:
    row = time_runtime(request)
  except errors.UserError as e:
    row = {"name": request["name"], "runtime": RUNTIMES[request["runtime"]], "error": str(e)}
  print(_RESULT + json.dumps(row), flush=True)


if __name__ == "__main__":
  _worker()
