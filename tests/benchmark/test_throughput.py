"""The benchmark runs the real steps of a tiny variant and reports every field."""

import json

import pytest

from jaxseg.benchmark import throughput
from tests.helpers import run_command, tiny_config


@pytest.mark.slow
def test_benchmark_reports_throughput_flops_memory_and_mfu(data_dir):
  config = tiny_config(data_dir, batch_size=2)
  record = throughput.benchmark(config, steps=1, warmup=0, input_batches=2)
  assert record["params"] > 0 and record["num_classes"] == 5
  assert record["peak_source"].startswith("measured") and record["peak_flops"] > 0
  for mode in ("train", "infer"):
    t = record[mode]
    assert t["images_per_second"] > 0 and t["step_ms_p90"] >= t["step_ms_median"] > 0
    assert t["compile_s"] > 0 and t["compiled_bytes"] > 0
    # XLA counts the FLOPs: training (forward + backward) costs more than inference.
    assert t["flops_per_image"] > 0 and 0 < t["mfu"] < 1
  assert record["train"]["flops_per_image"] > 2 * record["infer"]["flops_per_image"]
  assert record["input_pipeline_images_per_second"] > 0 and record["host_peak_rss_bytes"] > 0
  table = throughput.format_table([{"name": "tiny", **record}])
  assert "train" in table and "infer" in table
  json.dumps(record)  # One JSON object.


def test_accelerator_peaks_are_looked_up_by_device_kind():
  class Device:
    platform = "gpu"
    device_kind = "NVIDIA H100 80GB HBM3"

  assert throughput.accelerator_peak(Device(), "bfloat16") == (989e12, "table: H100")
  Device.device_kind, Device.platform = "TPU v5 lite", "tpu"
  assert throughput.accelerator_peak(Device(), "float32")[0] == 197e12
  Device.device_kind = "Mystery chip"
  assert throughput.accelerator_peak(Device(), "float32")[0] is None


@pytest.mark.slow
def test_command_line_benchmarks_several_configs_with_the_same_overrides(data_dir, tmp_path):
  out = run_command(
    "jaxseg.benchmark",
    "--config=configs/psp.py",
    "--config=configs/unet.py",
    f"--config.data.data_dir={data_dir}",
    "--config.data.variant=tiny",
    "--config.batch_size=2",
    "--config.crop_size=32,32",
    "--config.conv_backend=xla",
    "--mode=infer",
    "--steps=1",
    "--warmup=0",
    "--input_batches=0",
    f"--json={tmp_path / 'bench.json'}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "bench.json") as f:
    records = json.load(f)["results"]
  assert [r["model"] for r in records] == ["pspnet", "unet"]
  for r in records:
    assert r["size"] == [32, 32] and r["infer"]["batch"] == 2 and "train" not in r
    assert r["convolutions"].startswith("convolutions: XLA")
  assert "configs/unet.py" in out.stdout
