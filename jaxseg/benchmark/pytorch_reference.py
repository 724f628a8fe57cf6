"""The PyTorch side of jaxseg's speed comparisons (not imported by jaxseg, and
torch is not a jaxseg dependency): run it with a Python that has torch and
torchvision installed, from any directory.

    python jaxseg/benchmark/pytorch_reference.py --threads=2 --steps=5
    python jaxseg/benchmark/pytorch_reference.py --latency --sizes=512x1024,480x640

Throughput (default): torchvision's DeepLabV3-ResNet-50 (39.6M parameters,
output stride 8, ASPP rates 12/24/36) and a U-Net of the paper's widths
(31.0M, transposed-conv up-sampling, the same network as jaxseg's
`configs/unet.py:paper`), 21 classes, 256×256: a train step (forward,
cross-entropy, backward, SGD with momentum) at batch 4 and inference at batch
8, in float32 (channels_last) and bfloat16 (autocast + channels_last), PyTorch
at its fastest on a CPU. Prints images/s as the median over the timed steps.
`--models` names others: transformers' `segformer_b0` .. `b2`,
`upernet_convnext_tiny`, `upernet_swin_tiny` (trained with AdamW), or any
torchvision segmentation network.

`--latency`: batch-1 inference of torchvision's real-time networks
(`lraspp_mobilenet_v3_large`, `deeplabv3_mobilenet_v3_large`, 21 classes;
`--models` may name transformers' `segformer_b0` .. `b2`,
`upernet_convnext_tiny`, `upernet_swin_tiny` too) at each size, ms/frame
p50 and p90, in every way a PyTorch user would run them (`--engines`): eager,
torch.compile, and onnxruntime on torch.onnx.export's graph (needs onnx and
onnxruntime beside torch); `python -m jaxseg.benchmark --mode=latency
--torch_python=PYTHON` runs this in the same benchmark run.
"""

import argparse
import json
import statistics
import time

import torch
import torchvision
from torch import nn


def _double_conv(cin: int, cout: int) -> nn.Sequential:
  return nn.Sequential(
    nn.Conv2d(cin, cout, 3, padding=1, bias=False),
    nn.BatchNorm2d(cout),
    nn.ReLU(inplace=True),
    nn.Conv2d(cout, cout, 3, padding=1, bias=False),
    nn.BatchNorm2d(cout),
    nn.ReLU(inplace=True),
  )


class UNet(nn.Module):
  def __init__(self, num_classes: int, width: int = 64):
    super().__init__()
    widths = [width * 2**i for i in range(5)]  # 64 .. 1024
    self.down = nn.ModuleList([_double_conv(3, widths[0])])
    self.down.extend(_double_conv(widths[i], widths[i + 1]) for i in range(4))
    self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in range(4))
    self.fuse = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in range(4))
    self.classifier = nn.Conv2d(widths[0], num_classes, 1)

  def forward(self, x):
    skips = []
    for i, block in enumerate(self.down):
      x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
      skips.append(x)
    x = skips.pop()
    for i in reversed(range(4)):
      x = self.fuse[i](torch.cat([skips[i], self.up[i](x)], 1))
    return {"out": self.classifier(x)}


THROUGHPUT_MODELS = ("deeplabv3_resnet50", "unet")


def _throughput_model(name: str, num_classes: int) -> nn.Module:
  """`unet` (the paper's), or `make_network`'s network `name`."""
  return UNet(num_classes) if name == "unet" else make_network(name, num_classes)


def _time(fn, steps: int, warmup: int) -> list[float]:
  times = []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    fn()
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  return times


def measure(model, mode, dtype, batch, size, num_classes, steps, warmup, adamw=False) -> float:
  model = model.to(memory_format=torch.channels_last)
  images = torch.randn(batch, 3, *size).to(memory_format=torch.channels_last)
  labels = torch.randint(0, num_classes, (batch, *size))
  autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  if mode == "train":
    model.train()
    if adamw:  # transformers' networks (their papers' and jaxseg's configs).
      optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01)
    else:
      optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)

    def step():
      optimizer.zero_grad(set_to_none=True)
      with autocast:
        loss = loss_fn(_out(model(images)).float(), labels)
      loss.backward()
      optimizer.step()

  else:
    model.eval()

    def step():
      with torch.no_grad(), autocast:
        _out(model(images)).argmax(1)

  return batch / statistics.median(_time(step, steps, warmup))


def _out(output):
  """The logits of `UNet`'s dict or `_Logits`' tensor."""
  return output["out"] if isinstance(output, dict) else output


REAL_TIME_MODELS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
# transformers' networks by jaxseg's config name (`--models`; needs transformers).
_MIT = {
  "b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256), "b1": ([64, 128, 320, 512], [2, 2, 2, 2], 256),
  "b2": ([64, 128, 320, 512], [3, 4, 6, 3], 768),
}  # fmt: skip
# How PyTorch runs a network: eager (channels_last; autocast for bfloat16),
# torch.compile (the same, compiled by Inductor), and onnxruntime on
# torch.onnx.export's graph (float32: onnxruntime's CPU kernels have no bfloat16).
ENGINES = ("eager", "compile", "onnxruntime")


class _Logits(nn.Module):
  """Logits at the input's size as one tensor (exports want a tensor):
  torchvision's `out`, or transformers' `logits` resized as its
  post-processing does (SegFormer classifies at stride 4)."""

  def __init__(self, model):
    super().__init__()
    self.model = model

  def forward(self, x):
    out = self.model(x)
    if isinstance(out, dict) and "out" in out:
      return out["out"]
    return nn.functional.interpolate(
      out.logits, size=x.shape[2:], mode="bilinear", align_corners=False
    )


def make_network(name: str, num_classes: int) -> nn.Module:
  """torchvision's segmentation network `name`, or transformers'
  `segformer_b0|b1|b2` / `upernet_convnext_tiny|upernet_swin_tiny`, random
  weights, logits at the input's size (`_Logits`)."""
  if name.startswith(("segformer_", "upernet_")):
    import transformers

    if name.startswith("segformer_"):
      widths, depths, decoder = _MIT[name.split("_", 1)[1]]
      config = transformers.SegformerConfig(
        num_labels=num_classes, hidden_sizes=widths, depths=depths, decoder_hidden_size=decoder
      )
      return _Logits(transformers.SegformerForSemanticSegmentation(config))
    stages = ["stage1", "stage2", "stage3", "stage4"]
    backbone = (
      transformers.ConvNextConfig(
        depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768], out_features=stages
      )
      if name.endswith("convnext_tiny")
      else transformers.SwinConfig(out_features=stages)
    )
    config = transformers.UperNetConfig(backbone_config=backbone, num_labels=num_classes)
    return _Logits(transformers.UperNetForSemanticSegmentation(config))
  make = getattr(torchvision.models.segmentation, name)
  return _Logits(make(weights=None, weights_backbone=None, num_classes=num_classes))


def _onnxruntime_step(model, images, threads: int, path: str):
  """`step()` running `model`'s torch.onnx.export graph in onnxruntime (every
  graph optimisation, `threads` intra-op threads), as a PyTorch user deploys."""
  import onnxruntime as ort

  torch.onnx.export(
    model.eval(), (images.contiguous(),), path, dynamo=False, opset_version=17,
    input_names=["images"], output_names=["logits"],
  )  # fmt: skip
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = threads
  session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
  feed = {"images": images.contiguous().numpy()}
  return lambda: session.run(None, feed)


def _torch_step(model, images, dtype: str, engine: str):
  autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  forward = torch.compile(model) if engine == "compile" else model

  def step():
    with torch.no_grad(), autocast:
      forward(images)

  return step


def latency(args) -> list[dict]:
  """Batch-1 inference latency of the real-time networks, ms/frame, for each
  engine in `args.engines`."""
  import tempfile

  results = []
  engines = [e for e in args.engines.split(",") if e]
  for name in args.models.split(","):
    model = make_network(name, args.num_classes).eval().to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    for size in args.sizes.split(","):
      h, w = (int(v) for v in size.split("x"))
      images = torch.randn(1, 3, h, w).to(memory_format=torch.channels_last)
      for engine in engines:
        for dtype in args.dtypes.split(","):
          if engine == "onnxruntime" and dtype != "float32":
            continue
          if engine == "onnxruntime":
            with tempfile.TemporaryDirectory() as tmp:
              step = _onnxruntime_step(model, images, args.threads, f"{tmp}/model.onnx")
              times = sorted(_time(step, args.steps, args.warmup))
          else:
            times = sorted(
              _time(_torch_step(model, images, dtype, engine), args.steps, args.warmup)
            )
          p50 = 1e3 * statistics.median(times)
          p90 = 1e3 * times[min(len(times) - 1, int(0.9 * len(times)))]
          results.append(
            {"model": name, "engine": engine, "params": params, "size": [h, w], "dtype": dtype,
             "ms_p50": p50, "ms_p90": p90}
          )  # fmt: skip
          print(
            f"{name:<30} {engine:<11} {h}x{w} {dtype:<8} {p50:7.1f} ms p50 {p90:7.1f} p90",
            flush=True,
          )
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--num_classes", type=int, default=21)
  parser.add_argument("--latency", action="store_true", help="Batch-1 real-time networks.")
  parser.add_argument(
    "--models",
    help="default: " + ",".join(THROUGHPUT_MODELS) + "; --latency: " + ",".join(REAL_TIME_MODELS),
  )
  parser.add_argument("--sizes", default="512x1024,480x640", help="HxW,HxW (--latency).")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument(
    "--engines", default=",".join(ENGINES), help="--latency: of " + ",".join(ENGINES)
  )
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  if args.latency:
    args.models = args.models or ",".join(REAL_TIME_MODELS)
    print(json.dumps({"torch": torch.__version__, "latency": latency(args)}))
    return
  results = []
  for name in (args.models or ",".join(THROUGHPUT_MODELS)).split(","):
    model = _throughput_model(name, args.num_classes)
    params = sum(p.numel() for p in model.parameters())
    for mode, batch in (("train", 4), ("infer", 8)):
      for dtype in ("float32", "bfloat16"):
        rate = measure(
          model, mode, dtype, batch, (args.size,) * 2, args.num_classes, args.steps,
          args.warmup, adamw=name.startswith(("segformer_", "upernet_")),
        )  # fmt: skip
        results.append(
          {"model": name, "params": params, "mode": mode, "dtype": dtype, "img_s": rate}
        )
        print(f"{name:<20} {params / 1e6:5.1f}M {mode:<5} {dtype:<8} {rate:6.2f} img/s", flush=True)
  print(json.dumps({"torch": torch.__version__, "results": results}))


if __name__ == "__main__":
  main()
