"""The torch side of the backbone parity tests (`tests/models/test_pretrained.py`).

Not a test: the tests run it in a subprocess, because torchvision crashes
when imported into a process that has already loaded TensorFlow (TFDS).

    python tests/torch_parity.py --model=torchvision:resnet50 --output_stride=8 --out=DIR

builds the model with random weights and randomised BatchNorm statistics,
saves its state dict to `DIR/weights.pth` (`.safetensors` for timm), and
writes `DIR/expected.npz`: the input image (NHWC) and the model's own
intermediate outputs (NHWC), named as jaxseg's endpoints.
"""

import argparse
import os

import numpy as np
import torch


def randomise_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
  """Random BN affine parameters and running statistics, so that BN is not an
  identity and a mix-up of mean/var/scale/bias shows."""
  torch.manual_seed(0)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 1.5)
  return model.eval()


def dilate_basic_blocks(model: torch.nn.Module) -> None:
  """torchvision's `replace_stride_with_dilation=[False, True, True]` for
  ResNet-18/34, whose BasicBlock refuses dilation in its constructor (its
  convolutions take it): the same rule as torchvision's Bottleneck, the first
  block of a dilated stage keeping the previous stage's dilation."""
  previous = 1
  for stage, dilation in ((model.layer3, 2), (model.layer4, 4)):
    for j, block in enumerate(stage):
      d = previous if j == 0 else dilation
      for conv in (block.conv1, block.conv2):
        conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
      if block.downsample is not None:
        block.downsample[0].stride = (1, 1)
    previous = dilation


def nhwc(x: torch.Tensor) -> np.ndarray:
  return x.detach().numpy().transpose(0, 2, 3, 1)


def torchvision_resnet(arch: str, output_stride: int, image: torch.Tensor):
  import torchvision

  bottleneck = arch in ("resnet50", "resnet101")
  dilate = [False, True, True] if output_stride == 8 and bottleneck else None
  model = randomise_batch_norm(
    getattr(torchvision.models, arch)(replace_stride_with_dilation=dilate)
  )
  if output_stride == 8 and not bottleneck:
    dilate_basic_blocks(model)
  expected = {}
  x = model.maxpool(model.relu(model.bn1(model.conv1(image))))
  for i in range(1, 5):
    x = getattr(model, f"layer{i}")(x)
    expected[f"stride{2 ** (i + 1)}"] = nhwc(x)
  return model, expected


def torchvision_vgg(arch: str, image: torch.Tensor):
  import torchvision

  model = randomise_batch_norm(getattr(torchvision.models, arch)())
  expected, pool, x = {}, 0, image
  for layer in model.features:
    x = layer(x)
    if isinstance(layer, torch.nn.MaxPool2d):
      pool += 1
      expected[f"pool{pool}"] = nhwc(x)
  # classifier[:5] = fc6, ReLU, Dropout, fc7, ReLU: FCN's fc7 endpoint.
  fc7 = model.classifier[:5](torch.flatten(model.avgpool(x), 1))
  expected["fc7"] = fc7.detach().numpy()[:, None, None]
  return model, expected


def torchvision_mobilenet(arch: str, output_stride: int, image: torch.Tensor):
  """torchvision's MobileNet; output stride 16 is its segmentation models'
  `dilated=True` (MobileNetV3 only). Every `features[i]` output is an endpoint."""
  import torchvision

  kwargs = {"dilated": True} if output_stride == 16 else {}
  model = randomise_batch_norm(getattr(torchvision.models, arch)(**kwargs))
  expected, x = {}, image
  for i, layer in enumerate(model.features):
    x = layer(x)
    expected[f"features{i}"] = nhwc(x)
  return model, expected


def torchvision_segmentation(arch: str, image: torch.Tensor):
  """A whole torchvision segmentation network (21 classes, with the
  auxiliary head its published COCO weights have), its logits at the input's size."""
  import torchvision

  make = getattr(torchvision.models.segmentation, arch)
  aux = None if arch.startswith("lraspp") else True
  model = randomise_batch_norm(
    make(weights=None, weights_backbone=None, num_classes=21, aux_loss=aux)
  )
  return model.eval(), {"logits": nhwc(model(image)["out"])}


def timm_model(arch: str, image: torch.Tensor):
  import timm

  model = randomise_batch_norm(timm.create_model(arch, pretrained=False))
  if arch == "vgg16":  # fc6/fc7 as convolutions (`pre_logits`).
    return model, {"fc7": nhwc(model.pre_logits(model.features(image)))}
  return model, {"stride32": nhwc(model.forward_features(image))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--model", required=True, help="torchvision:ARCH, segmentation:ARCH or timm:ARCH"
  )
  parser.add_argument("--output_stride", type=int, default=32)
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--out", required=True)
  parser.add_argument(
    "--image", help="segmentation: also `labels`, the argmax on this RGB file's pixels"
  )
  args = parser.parse_args()
  source, arch = args.model.split(":")
  image = np.random.default_rng(0).normal(size=(1, 3, args.size, args.size)).astype(np.float32)
  with torch.no_grad():
    if source == "timm":
      model, expected = timm_model(arch, torch.from_numpy(image))
    elif source == "segmentation":
      model, expected = torchvision_segmentation(arch, torch.from_numpy(image))
    elif arch.startswith("vgg"):
      model, expected = torchvision_vgg(arch, torch.from_numpy(image))
    elif arch.startswith("mobilenet"):
      model, expected = torchvision_mobilenet(arch, args.output_stride, torch.from_numpy(image))
    else:
      model, expected = torchvision_resnet(arch, args.output_stride, torch.from_numpy(image))
  os.makedirs(args.out, exist_ok=True)
  if source == "timm":
    from safetensors.torch import save_file

    save_file(model.state_dict(), os.path.join(args.out, "weights.safetensors"))
  else:
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))
  if args.image:
    expected["labels"] = photo_labels(model, args.image)
  np.savez(os.path.join(args.out, "expected.npz"), image=image.transpose(0, 2, 3, 1), **expected)


def photo_labels(model, path: str) -> np.ndarray:
  """A segmentation network's labels on an RGB file, normalised as
  torchvision's segmentation weights' transforms do (without their resize)."""
  from PIL import Image

  pixels = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
  pixels = (pixels - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  with torch.no_grad():
    out = model(torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32)))["out"]
  return out.argmax(1)[0].numpy()


if __name__ == "__main__":
  main()
