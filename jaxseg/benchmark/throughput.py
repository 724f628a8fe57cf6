"""Throughput, memory, FLOPs and MFU of a config's real train and inference steps.

The train step is `training.steps.jit_train_step`, the one training runs (augmentation,
forward, loss, backward, optimizer update, state donated); inference is the
whole-image forward pass evaluation and prediction run. Inputs are synthetic
and already on the device, so the input pipeline is not timed by accident; it
is measured on its own (`--input`): the real loader of the config's dataset.

Per mode: images/s (median over the timed steps, with min and max), step time
median and p90, compile time, XLA's FLOPs per image (cost analysis) and the
FLOP/s achieved, MFU against the accelerator's peak (a table of common ones;
on CPU, a peak measured by a dense matmul probe), peak device memory where the
runtime reports it, otherwise XLA's compiled footprint; then host peak RSS.
Prints a table and, with `--json`, writes one JSON object.
"""

import dataclasses
import functools
import resource
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import inference
from jaxseg.data import get_dataset_spec, pipeline
from jaxseg.models import onednn
from jaxseg.parallel import sharding
from jaxseg.training import state as train_state
from jaxseg.training import steps as train_steps

# Dense peak FLOP/s per chip by compute dtype. float32 matmuls on these GPUs
# run as TF32 by default (JAX's default precision) and on TPUs as bfloat16
# passes, so float32 is held against those peaks.
PEAK_FLOPS = {
  "H200": {"bfloat16": 989e12, "float32": 495e12},
  "H100": {"bfloat16": 989e12, "float32": 495e12},
  "A100": {"bfloat16": 312e12, "float32": 156e12},
  "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
  "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},  # v5e
  "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
  "TPU v5": {"bfloat16": 459e12, "float32": 459e12},  # v5p reports "TPU v5"
}


def accelerator_peak(device: jax.Device, dtype: str) -> tuple[float | None, str]:
  """`(peak FLOP/s, where it comes from)` for `device`, or `(None, why)`."""
  if device.platform == "cpu":
    # The faster of the dtype's probe and float32's: where bfloat16 is no
    # faster than float32 (no AMX), jaxseg's convolutions compute in float32.
    peak = max(cpu_matmul_peak(dtype), cpu_matmul_peak("float32"))
    return peak, "measured: dense matmul probe"
  kind = device.device_kind
  for name, peaks in PEAK_FLOPS.items():  # Longer names first where they share a prefix.
    if name in kind:
      return peaks[dtype], f"table: {name}"
  return None, f"no peak known for {kind!r}"


@functools.cache
def cpu_matmul_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
  """The best FLOP/s of an `n`×`n`×`n` matmul on the CPU; bfloat16 operands
  accumulate in float32, the form that reaches the CPU's bf16 units."""
  a = jnp.ones((n, n), jnp.dtype(dtype))

  @jax.jit
  def matmul(x, y):
    return jax.lax.dot_general(x, y, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)

  matmul(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


@dataclasses.dataclass
class Timing:
  """One mode's measurements."""

  mode: str
  batch: int
  images_per_second: float
  images_per_second_min: float
  images_per_second_max: float
  step_ms_median: float
  step_ms_p90: float
  compile_s: float
  flops_per_image: float | None
  achieved_flops: float | None
  mfu: float | None
  device_peak_bytes: int | None
  compiled_bytes: int


def _time_steps(compiled, args, steps: int, warmup: int, carry_state: bool) -> list[float]:
  """Seconds per call of `compiled(*args)`; the train step's new state is fed
  back in, since the old one was donated."""
  times = []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    out = compiled(*args)
    jax.block_until_ready(out)
    if i >= warmup:
      times.append(time.perf_counter() - t0)
    if carry_state:
      args = (out[0], *args[1:])
  return times


def _measure(mode, make_jitted, args, batch, steps, warmup, peak, carry_state) -> Timing:
  """Times `make_jitted()(*args)`; `make_jitted` builds a new jitted function
  each call, so it can be traced again under another convolution backend."""
  t0 = time.perf_counter()
  compiled = make_jitted().lower(*args).compile()
  compile_s = time.perf_counter() - t0
  times = np.asarray(_time_steps(compiled, args, steps, warmup, carry_state))
  if onednn.applies(jnp.float32):
    # XLA counts no FLOPs inside custom calls: count those of the same
    # program with XLA's convolutions (HLO analysis, nothing compiled).
    with onednn.backend("xla"):
      cost = make_jitted().lower(*args).cost_analysis()
  else:
    cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost["flops"]) if cost and cost.get("flops", 0) > 0 else None
  median = float(np.median(times))
  achieved = flops / median if flops else None
  memory = compiled.memory_analysis()
  compiled_bytes = (
    memory.temp_size_in_bytes
    + memory.argument_size_in_bytes
    + memory.output_size_in_bytes
    - memory.alias_size_in_bytes
  )
  stats = jax.local_devices()[0].memory_stats() or {}
  return Timing(
    mode=mode,
    batch=batch,
    images_per_second=batch / median,
    images_per_second_min=batch / float(times.max()),
    images_per_second_max=batch / float(times.min()),
    step_ms_median=1e3 * median,
    step_ms_p90=1e3 * float(np.percentile(times, 90)),
    compile_s=compile_s,
    flops_per_image=flops / batch if flops else None,
    achieved_flops=achieved,
    mfu=achieved / peak if achieved and peak else None,
    device_peak_bytes=stats.get("peak_bytes_in_use"),
    compiled_bytes=int(compiled_bytes),
  )


def _synthetic_batch(key, batch: int, size, num_classes: int, mesh) -> dict[str, jax.Array]:
  """A device-resident batch shaped as the loader's, sharded as training shards it."""
  ki, kl = jax.random.split(key)
  h, w = size
  host = {
    "image": np.asarray(jax.random.randint(ki, (batch, h, w, 3), 0, 256, jnp.int32), np.uint8),
    "label": np.asarray(jax.random.randint(kl, (batch, h, w), 0, num_classes, jnp.int32)),
    "size": np.tile(np.asarray([h, w], np.int32), (batch, 1)),
    "base_scale": np.ones((batch,), np.float32),
  }
  return jax.device_put(host, sharding.batch_sharding(mesh))


def input_pipeline_rate(config: ml_collections.ConfigDict, batches: int) -> float:
  """Images/s of the config's real training loader (decode, check, pad, batch)."""
  spec, builder = pipeline.prepare(config)
  mesh = sharding.make_mesh(config)
  iterator = pipeline.train_iterator(config, spec, builder, mesh)
  next(iterator)  # Start-up: threads, file handles.
  t0 = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * config.batch_size / (time.perf_counter() - t0)


def benchmark(
  config: ml_collections.ConfigDict,
  *,
  modes: tuple[str, ...] = ("train", "infer"),
  steps: int = 10,
  warmup: int = 2,
  infer_batch: int | None = None,
  num_classes: int | None = None,
  input_batches: int = 0,
) -> dict:
  """Measures `config` (its `batch_size`, `crop_size` and `dtype`); returns the
  JSON-able record `main` prints. `input_batches` > 0 also times the loader."""
  if num_classes is None:
    num_classes = get_dataset_spec(config.data).num_classes
  mesh = sharding.make_mesh(config)
  sharding.check_batch_layout(config, mesh)
  model, optimizer, init_state, abstract_state, state_sharding = train_state.build(
    config, num_classes, mesh
  )
  device = jax.local_devices()[0]
  peak, peak_source = accelerator_peak(device, config.dtype)
  key = jax.random.key(0)
  results = {}
  state = init_state()
  if "infer" in modes:
    batch = infer_batch or config.batch_size
    images = _synthetic_batch(key, batch, config.crop_size, num_classes, mesh)["image"]
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    forward = lambda: jax.jit(functools.partial(inference.forward_logits, model))
    results["infer"] = _measure(
      "infer", forward, (variables, images), batch, steps, warmup, peak, False
    )
  if "train" in modes:
    batch = _synthetic_batch(key, config.batch_size, config.crop_size, num_classes, mesh)
    step = lambda: train_steps.jit_train_step(
      config, model, optimizer, mesh, state_sharding, spec=get_dataset_spec(config.data),
      num_classes=num_classes,
    )  # fmt: skip
    results["train"] = _measure(
      "train", step, (state, batch), config.batch_size, steps, warmup, peak, True
    )
  record = {
    "model": config.model.name,
    "params": int(sum(x.size for x in jax.tree.leaves(abstract_state.params))),
    "size": list(config.crop_size),
    "dtype": config.dtype,
    "num_classes": num_classes,
    "devices": jax.device_count(),
    "device_kind": device.device_kind,
    "peak_flops": peak,
    "peak_source": peak_source,
    "convolutions": onednn.describe(),
    **{mode: dataclasses.asdict(t) for mode, t in results.items()},
  }
  if input_batches:
    record["input_pipeline_images_per_second"] = input_pipeline_rate(config, input_batches)
  record["host_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return record


def format_table(records: list[dict]) -> str:
  """One row per config and mode."""
  header = (
    f"{'config':<28} {'mode':<5} {'dtype':<8} {'batch':>5} {'size':>9} {'params':>7} "
    f"{'img/s':>7} {'(min-max)':>13} {'ms p50':>8} {'ms p90':>8} {'compile':>7} "
    f"{'GFLOP/img':>9} {'GFLOP/s':>8} {'MFU':>6} {'memory':>9} {'input img/s':>11}"
  )
  lines = [header, "-" * len(header)]
  for r in records:
    for mode in ("train", "infer"):
      if mode not in r:
        continue
      t = r[mode]
      mem = t["device_peak_bytes"] or t["compiled_bytes"]
      flops = f"{t['flops_per_image'] / 1e9:.3g}" if t["flops_per_image"] else "n/a"
      rate = f"{t['achieved_flops'] / 1e9:.0f}" if t["achieved_flops"] else "n/a"
      mfu = f"{100 * t['mfu']:.1f}%" if t["mfu"] else "n/a"
      pipe = r.get("input_pipeline_images_per_second")
      spread = f"({t['images_per_second_min']:.2f}-{t['images_per_second_max']:.2f})"
      pipe_text = f"{pipe:.0f}" if pipe and mode == "train" else ""
      lines.append(
        f"{r['name']:<28} {mode:<5} {r['dtype']:<8} {t['batch']:>5} "
        f"{'x'.join(map(str, r['size'])):>9} {r['params'] / 1e6:>6.1f}M "
        f"{t['images_per_second']:>7.2f} "
        f"{spread:>13} "
        f"{t['step_ms_median']:>8.0f} {t['step_ms_p90']:>8.0f} {t['compile_s']:>6.1f}s "
        f"{flops:>9} {rate:>8} {mfu:>6} {mem / 2**20:>7.0f}Mi "
        f"{pipe_text:>11}"
      )
  return "\n".join(lines)
