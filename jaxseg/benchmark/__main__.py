"""Benchmarks configs: `python -m jaxseg.benchmark --config=configs/psp.py`.

    python -m jaxseg.benchmark --config=configs/psp.py
    python -m jaxseg.benchmark --config=configs/deeplabv3.py:resnet50 --config.batch_size=4 \\
        --config.crop_size=256,256 --config.dtype=bfloat16 --mode=train --steps=10 --json=b.json
    python -m jaxseg.benchmark --config=configs/unet.py --config=configs/psp.py   # one table
    python -m jaxseg.benchmark --mode=latency --config=configs/lraspp.py --sizes=480x640
    python -m jaxseg.benchmark --mode=exports --config=configs/unet.py --sizes=512x512

`--mode=train|infer|both` times the real train step and the whole-image
forward pass (`benchmark.throughput`), `--mode=latency` batch-1 ms/frame
(`benchmark.latency`), `--mode=exports` each export format in its runtime
(`benchmark.exports`). A config's batch size, crop size (the images' size),
dtype and any other field are set as in training (`--config.KEY=VALUE`,
applied to every config).
"""

import json
import os

import jax
from absl import app, flags

from jaxseg import cli, errors
from jaxseg.benchmark import exports, latency, throughput

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined on use so that importing this module
  does not claim flag names."""
  cli.define_config_flag(multi=True)
  flags.DEFINE_integer("infer_batch", None, "Inference batch; default: config.batch_size.")
  flags.DEFINE_enum(
    "mode",
    "both",
    ["train", "infer", "both", "latency", "exports"],
    "What to time (latency: see benchmark/latency.py; exports: benchmark/exports.py).",
  )
  flags.DEFINE_list(
    "formats", ["stablehlo", "onnx", "savedmodel", "tflite"], "--mode=exports: formats to time."
  )
  flags.DEFINE_string("sizes", "", "--mode=latency: HxW,HxW; default: the config's crop size.")
  flags.DEFINE_list("dtypes", [], "--mode=latency: float32,bfloat16; default: the config's dtype.")
  flags.DEFINE_string(
    "torch_python", "", "--mode=latency: a Python with torch to time torchvision's networks too."
  )
  flags.DEFINE_integer("torch_threads", 2, "--mode=latency: PyTorch's intra-op threads.")
  flags.DEFINE_list(
    "torch_models", [],
    "--mode=latency: PyTorch's networks to time; default torchvision's real-time ones "
    "(also segformer_b0..b2, upernet_convnext_tiny, upernet_swin_tiny from transformers).",
  )  # fmt: skip
  flags.DEFINE_list(
    "engines", list(latency.ENGINES),
    "--mode=latency: jit, onnxruntime (jaxseg's and PyTorch's exports), eager, compile (PyTorch).",
  )  # fmt: skip
  flags.DEFINE_integer("steps", 10, "Timed steps (after the warm-up).")
  flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
  flags.DEFINE_integer("num_classes", None, "Classes; default: the config's dataset's.")
  flags.DEFINE_integer("input_batches", 20, "Loader batches to time; 0: skip the loader.")
  flags.DEFINE_string("json", None, "Write the results here as one JSON object.")


def latency_main() -> None:
  """`--mode=latency`: the batch-1 table of `benchmark.latency`."""
  configs = cli.load_configs()
  try:
    sizes = latency.parse_sizes(FLAGS.sizes)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  for dtype in FLAGS.dtypes:
    if dtype not in ("float32", "bfloat16"):
      raise app.UsageError(f"--dtypes: {dtype!r} is neither float32 nor bfloat16")
  unknown = sorted(set(FLAGS.engines) - set(latency.ENGINES))
  if unknown:
    raise app.UsageError(f"--engines: {', '.join(unknown)} not among {', '.join(latency.ENGINES)}")
  rows = []
  for spec, config in configs:
    print(f"Timing {spec} at batch 1 ...", flush=True)
    rows += latency.measure(
      spec,
      config,
      sizes or [tuple(config.crop_size)],
      FLAGS.dtypes or [config.dtype],
      steps=FLAGS.steps,
      warmup=FLAGS.warmup,
      num_classes=FLAGS.num_classes,
      engines=FLAGS.engines,
    )
  if FLAGS.torch_python:
    print(f"Timing torchvision with {FLAGS.torch_python} ...", flush=True)
    rows += latency.measure_torch(
      FLAGS.torch_python,
      sizes or [tuple(configs[0][1].crop_size)],
      FLAGS.dtypes or [configs[0][1].dtype],
      steps=FLAGS.steps,
      warmup=FLAGS.warmup,
      num_classes=rows[0]["num_classes"] if rows else FLAGS.num_classes or 21,
      threads=FLAGS.torch_threads,
      engines=FLAGS.engines,
      models=FLAGS.torch_models,
    )
  print(f"\n{jax.device_count()} × {jax.local_devices()[0].device_kind}, batch 1")
  print(latency.format_table(rows))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"latency": rows}, f, indent=2)


def exports_main() -> None:
  """`--mode=exports`: the table of `benchmark.exports`."""
  sizes = latency.parse_sizes(FLAGS.sizes or "512x512")
  rows = []
  for spec, config in cli.load_configs():
    for size in sizes:
      print(f"Exporting and timing {spec} at {size[0]}x{size[1]}, batch 1 ...", flush=True)
      rows += exports.measure(
        spec, config, size, FLAGS.formats, steps=FLAGS.steps, warmup=FLAGS.warmup,
        num_classes=FLAGS.num_classes,
      )  # fmt: skip
  print(f"\n{os.cpu_count()} CPU cores, batch 1, float32")
  print(exports.format_table(rows))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"exports": rows}, f, indent=2)
  failed = [f"{r['name']} {r['runtime']}" for r in rows if "error" in r]
  if failed:
    raise errors.ExportFailed(f"{len(failed)} export(s) failed (see above): {'; '.join(failed)}")


def main(argv):
  del argv
  cli.quiet_logging()
  if FLAGS.mode == "latency":
    latency_main()
    return
  if FLAGS.mode == "exports":
    exports_main()
    return
  modes = ("train", "infer") if FLAGS.mode == "both" else (FLAGS.mode,)
  records = []
  for spec, config in cli.load_configs():
    print(f"Benchmarking {spec} ...", flush=True)
    record = throughput.benchmark(
      config,
      modes=modes,
      steps=FLAGS.steps,
      warmup=FLAGS.warmup,
      infer_batch=FLAGS.infer_batch,
      num_classes=FLAGS.num_classes,
      input_batches=FLAGS.input_batches,
    )
    records.append({"name": spec, **record})
  device = records[0]
  print(
    f"\n{jax.device_count()} × {device['device_kind']}; peak "
    f"{device['peak_flops'] / 1e9:.0f} GFLOP/s ({device['peak_source']})"
    if device["peak_flops"]
    else f"\n{jax.device_count()} × {device['device_kind']}; {device['peak_source']}"
  )
  print(throughput.format_table(records))
  out = records[0] if len(records) == 1 else {"results": records}
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(out, f, indent=2)
  print(json.dumps(out))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
