"""Batch-1 latency of real-time configs: `python -m jaxseg.benchmark --mode=latency`.

    python -m jaxseg.benchmark --mode=latency --config=configs/lraspp.py \\
        --config=configs/fastscnn.py --sizes=512x1024,480x640 --dtypes=float32,bfloat16 \\
        --num_classes=21 --torch_python=/path/to/torch-env/bin/python

For each config, size and dtype: the whole-image forward pass (preprocessing
included, logits out) on one frame, ms/frame p50 and p90 over the timed
calls, frames/s at the median, and XLA's GFLOPs per frame (2 per
multiply-add), for each engine of `--engines`:

- `jit`: jaxseg's jitted forward (`throughput.benchmark`, this process);
- `onnxruntime`: jaxseg's own ONNX export in onnxruntime (float32), in a
  process of its own (`benchmark.exports`).

With `--torch_python`, the same run then times torchvision's real-time
networks at the same sizes and dtypes in that interpreter
(`jaxseg/benchmark/pytorch_reference.py --latency`; torch stays out of
jaxseg's environment), with the engines `eager` (channels_last, autocast for
bfloat16), `compile` (torch.compile) and `onnxruntime` (torch.onnx.export's
graph), so that both sides share one machine state and one table.
"""

import json
import os
import subprocess
from collections.abc import Sequence

import ml_collections

from jaxseg import errors
from jaxseg.benchmark import exports, throughput

JAXSEG_ENGINES = ("jit", "onnxruntime")
TORCH_ENGINES = ("eager", "compile", "onnxruntime")
ENGINES = ("jit", "eager", "compile", "onnxruntime")

PYTORCH_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytorch_reference.py")


def parse_sizes(text: str) -> list[tuple[int, int]]:
  """ "512x1024,480x640" -> `[(512, 1024), (480, 640)]`."""
  sizes = []
  for part in filter(None, text.split(",")):
    try:
      h, w = (int(v) for v in part.lower().split("x"))
    except ValueError:
      raise errors.InvalidInput(f"--sizes: {part!r} is not HxW (e.g. 512x1024)") from None
    if h <= 0 or w <= 0:
      raise errors.InvalidInput(f"--sizes: {part!r} must be positive")
    sizes.append((h, w))
  return sizes


def measure(
  name: str,
  config: ml_collections.ConfigDict,
  sizes: Sequence[tuple[int, int]],
  dtypes: Sequence[str],
  *,
  steps: int,
  warmup: int,
  num_classes: int | None,
  engines: Sequence[str] = JAXSEG_ENGINES,
) -> list[dict]:
  """One row per size, engine and dtype for a jaxseg config."""
  rows = []
  for size in sizes:
    for dtype in dtypes if "jit" in engines else ():
      rows.append(_jit_row(name, config, size, dtype, steps, warmup, num_classes))
    if "onnxruntime" in engines and "float32" in dtypes:
      rows.append(_onnx_row(name, config, size, steps, warmup, num_classes, rows))
  return rows


def _jit_row(name, config, size, dtype, steps, warmup, num_classes) -> dict:
  setting = ml_collections.ConfigDict(config)  # A copy per size and dtype.
  setting.crop_size, setting.dtype = tuple(size), dtype
  record = throughput.benchmark(
    setting, modes=("infer",), steps=steps, warmup=warmup, infer_batch=1,
    num_classes=num_classes, input_batches=0,
  )  # fmt: skip
  infer = record["infer"]
  print(f"  {name} {size[0]}x{size[1]} jit {dtype}: {infer['step_ms_median']:.1f} ms", flush=True)
  return {
    "name": name, "engine": "jit", "params": record["params"],
    "num_classes": record["num_classes"], "size": list(size), "dtype": dtype,
    "gflops": infer["flops_per_image"] / 1e9 if infer["flops_per_image"] else None,
    "ms_p50": infer["step_ms_median"], "ms_p90": infer["step_ms_p90"],
    "compile_s": infer["compile_s"],
  }  # fmt: skip


def _onnx_row(name, config, size, steps, warmup, num_classes, rows) -> dict:
  """jaxseg's ONNX export of the config in onnxruntime, in its own process."""
  setting = ml_collections.ConfigDict(config)
  setting.dtype = "float32"
  timed = exports.time_in_own_process(
    name, setting, size, "onnx", steps=steps, warmup=warmup, num_classes=num_classes
  )
  if "error" in timed:
    raise errors.ExportFailed(timed["error"])
  print(f"  {name} {size[0]}x{size[1]} onnxruntime float32: {timed['ms_p50']:.1f} ms", flush=True)
  same = [r for r in rows if r["size"] == list(size) and r["dtype"] == "float32"]
  return {
    "name": name, "engine": "onnxruntime", "params": timed["params"],
    "num_classes": timed["num_classes"], "size": list(size), "dtype": "float32",
    "gflops": same[0]["gflops"] if same else None, "ms_p50": timed["ms_p50"],
    "ms_p90": timed["ms_p90"],
  }  # fmt: skip


def measure_torch(
  python: str,
  sizes: Sequence[tuple[int, int]],
  dtypes: Sequence[str],
  *,
  steps: int,
  warmup: int,
  num_classes: int,
  threads: int,
  engines: Sequence[str] = TORCH_ENGINES,
  models: Sequence[str] = (),
) -> list[dict]:
  """torchvision's real-time networks (or `models`: names
  `pytorch_reference.make_network` takes), timed by `python` (which has torch)."""
  command = [
    python,
    PYTORCH_REFERENCE,
    "--latency",
    f"--sizes={','.join(f'{h}x{w}' for h, w in sizes)}",
    f"--dtypes={','.join(dtypes)}",
    f"--steps={steps}",
    f"--warmup={warmup}",
    f"--num_classes={num_classes}",
    f"--threads={threads}",
    f"--engines={','.join(e for e in engines if e in TORCH_ENGINES)}",
    *([f"--models={','.join(models)}"] if models else []),
  ]
  try:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
  except OSError as e:
    raise errors.InvalidInput(f"--torch_python={python} cannot run: {e}") from None
  if done.returncode != 0:
    raise errors.InvalidInput(
      f"--torch_python={python}: {os.path.basename(PYTORCH_REFERENCE)} failed "
      f"(exit {done.returncode}):\n{done.stderr[-2000:]}"
    )
  result = json.loads(done.stdout.strip().splitlines()[-1])
  return [
    {**row, "name": f"torch {result['torch']}: {row['model']}", "gflops": None}
    for row in result["latency"]
  ]


def format_table(rows: list[dict]) -> str:
  header = (
    f"{'network':<48} {'engine':<11} {'size':>9} {'dtype':<8} {'params':>7} {'GFLOPs':>7} "
    f"{'ms p50':>8} {'ms p90':>8} {'frames/s':>8}"
  )
  lines = [header, "-" * len(header)]
  for r in rows:
    gflops = f"{r['gflops']:.2f}" if r.get("gflops") else ""
    lines.append(
      f"{r['name']:<48} {r.get('engine', 'jit'):<11} {'x'.join(map(str, r['size'])):>9} "
      f"{r['dtype']:<8} {r['params'] / 1e6:>6.2f}M {gflops:>7} {r['ms_p50']:>8.1f} "
      f"{r['ms_p90']:>8.1f} {1000 / r['ms_p50']:>8.2f}"
    )
  return "\n".join(lines)
