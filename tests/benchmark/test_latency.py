"""`python -m jaxseg.benchmark --mode=latency`: batch-1 rows per config, size
and dtype, and torchvision's rows read from another interpreter's output;
`--mode=exports`: each export format's runtime beside the jitted forward."""

import json
import stat
import sys

import pytest

from jaxseg import errors
from jaxseg.benchmark import exports, latency
from tests.helpers import run_command


def test_sizes_parse_and_bad_ones_are_named():
  assert latency.parse_sizes("512x1024,480X640") == [(512, 1024), (480, 640)]
  with pytest.raises(ValueError, match="'512' is not HxW"):
    latency.parse_sizes("512,1024")
  with pytest.raises(ValueError, match="'0x8' must be positive"):
    latency.parse_sizes("0x8")


def _fake_torch_python(tmp_path) -> str:
  """An interpreter stand-in that answers as `pytorch_reference.py --latency`
  does, echoing the sizes it was asked for."""
  script = tmp_path / "python"
  script.write_text(
    f"#!{sys.executable}\n"
    "import json, sys\n"
    "args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[2:] if '=' in a)\n"
    "assert sys.argv[1].endswith('pytorch_reference.py') and '--latency' in sys.argv\n"
    "rows = [{'model': 'lraspp_mobilenet_v3_large', 'params': 3221538, 'engine': e,\n"
    "         'size': [int(v) for v in s.split('x')], 'dtype': d, 'ms_p50': 50.0, 'ms_p90': 60.0}\n"
    "        for s in args['sizes'].split(',') for e in args['engines'].split(',')\n"
    "        for d in args['dtypes'].split(',') if e != 'onnxruntime' or d == 'float32']\n"
    "print('progress line')\n"
    "print(json.dumps({'torch': '9.9', 'latency': rows}))\n"
  )
  script.chmod(script.stat().st_mode | stat.S_IEXEC)
  return str(script)


@pytest.mark.slow
def test_latency_mode_times_each_size_and_dtype_beside_torch(data_dir, tmp_path):
  out = run_command(
    "jaxseg.benchmark",
    "--mode=latency",
    "--config=configs/fastscnn.py",
    f"--config.data.data_dir={data_dir}",
    "--config.data.variant=tiny",
    "--config.model.num_blocks=(1,1,1)",
    "--sizes=32x48,40x40",
    "--dtypes=float32,bfloat16",
    "--steps=2",
    "--warmup=0",
    f"--torch_python={_fake_torch_python(tmp_path)}",
    f"--json={tmp_path / 'latency.json'}",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "latency.json") as f:
    rows = json.load(f)["latency"]
  ours = [(r["size"], r["engine"], r["dtype"]) for r in rows if r["name"] == "configs/fastscnn.py"]
  sizes = ([32, 48], [40, 40])
  assert ours == [
    (size, engine, dtype)
    for size in sizes
    for engine, dtype in (("jit", "float32"), ("jit", "bfloat16"), ("onnxruntime", "float32"))
  ]  # fmt: skip  (jaxseg's own ONNX export in onnxruntime, timed in a process of its own)
  assert all(r["ms_p90"] >= r["ms_p50"] > 0 and r["gflops"] > 0 for r in rows[:6])
  torch_rows = [(r["size"], r["engine"], r["dtype"]) for r in rows if "torch 9.9" in r["name"]]
  assert torch_rows == [
    (size, engine, dtype) for size in sizes for engine in ("eager", "compile", "onnxruntime")
    for dtype in ("float32", "bfloat16") if engine != "onnxruntime" or dtype == "float32"
  ]  # fmt: skip
  assert "frames/s" in out.stdout and "torch 9.9: lraspp_mobilenet_v3_large" in out.stdout
  assert "onnx: worst |logit difference| against the training code" in out.stdout


def test_a_failing_torch_python_is_reported(tmp_path):
  script = tmp_path / "python"
  script.write_text(
    f"#!{sys.executable}\nimport sys\nsys.exit(\"ModuleNotFoundError: No module named 'torch'\")\n"
  )
  script.chmod(script.stat().st_mode | stat.S_IEXEC)
  with pytest.raises(ValueError, match=r"pytorch_reference.py failed \(exit 1\)") as error:
    latency.measure_torch(
      str(script), [(8, 8)], ["float32"], steps=1, warmup=0, num_classes=3, threads=1
    )
  assert "No module named 'torch'" in str(error.value)


def test_exports_mode_times_each_format_beside_the_jitted_forward(data_dir, tmp_path):
  """`--mode=exports`: U-Net exported (and checked) as ONNX and StableHLO,
  each timed by its runtime beside jaxseg's jitted forward."""
  out = run_command(
    "jaxseg.benchmark", "--mode=exports", "--config=configs/unet.py",
    f"--config.data.data_dir={data_dir}", "--config.data.variant=tiny",
    "--config.model.features=4", "--sizes=64x64", "--formats=stablehlo,onnx",
    "--num_classes=3", "--steps=2", "--warmup=0", f"--json={tmp_path / 'exports.json'}",
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "exports.json") as f:
    rows = json.load(f)["exports"]
  assert [r["runtime"] for r in rows] == [
    "jaxseg jit (make_predict_fn)", "StableHLO (jax.export)", "ONNX (onnxruntime)",
  ]  # fmt: skip
  assert all(r["ms_p90"] >= r["ms_p50"] > 0 and r["size"] == [64, 64] for r in rows)
  assert "onnx: worst |logit difference| against the training code" in out.stdout
  assert "| configs/unet.py |" in out.stdout


def test_exports_mode_names_an_unknown_format():
  with pytest.raises(errors.InvalidInput, match="--formats: coreml not among stablehlo, onnx"):
    exports.measure("x", None, (64, 64), ["coreml"], steps=1, warmup=0, num_classes=3)


def test_a_failing_format_is_one_line_and_the_others_are_timed(monkeypatch, capsys):
  def timed(name, config, size, runtime, **kwargs):
    if runtime == "tflite":
      return {"name": name, "runtime": exports.RUNTIMES[runtime], "error": f"{name}: tflite broke"}
    return {"name": name, "runtime": exports.RUNTIMES[runtime], "params": 1e6, "size": [8, 8],
            "ms_p50": 1.0, "ms_p90": 2.0}  # fmt: skip

  monkeypatch.setattr(exports, "time_in_own_process", timed)
  rows = exports.measure("configs/x.py", None, (8, 8), ["onnx", "tflite"], steps=1, warmup=0,
                         num_classes=3)  # fmt: skip
  assert [("error" in r) for r in rows] == [False, False, True]
  assert "error: configs/x.py: tflite broke" in capsys.readouterr().err
  assert "| configs/x.py | | TFLite (LiteRT, XNNPACK) | | failed (see above) | |" in (
    exports.format_table(rows)
  )


def test_a_converters_report_becomes_one_line_naming_config_and_format():
  from jaxseg.export import exporter

  report = (
    "loc(callsite(...)): error: 'tfl.batch_matmul' op found invalid output rank\n"
    "note: called from\n<unknown>:0: error: second\n"
  )
  with pytest.raises(errors.ExportFailed) as error:
    with exporter.failing_as_one_line("configs/lraspp.py", "tflite"):
      raise RuntimeError(report)
  assert str(error.value).startswith(
    "configs/lraspp.py: the tflite export failed: 'tfl.batch_matmul' op found invalid output rank "
  )
  assert "\n" not in str(error.value)
