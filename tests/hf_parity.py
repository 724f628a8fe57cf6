"""The transformers side of the SegFormer/UPerNet parity tests
(`tests/models/test_transformers_parity.py`).

Not a test: the tests run it in a subprocess (torch and TensorFlow do not
share a process well; see `torch_parity.py`).

    python tests/hf_parity.py --model=segformer_b0 --sizes=512x512,97x75 --out=DIR

builds the network with random weights (LayerNorm, BatchNorm, layer scales
and relative position biases randomised too, so none is an identity), saves
it with `save_pretrained` in the Hub's file layout into `DIR`, and writes
`DIR/expected.npz`: per size, the input (NHWC) and the logits resized to it
(NHWC), and `parameters`, the model's parameter count.
"""

import argparse

import numpy as np
import torch
import transformers

_STAGES = ["stage1", "stage2", "stage3", "stage4"]


def build(name: str, num_labels: int):
  """A transformers network by jaxseg's name for it (`_tiny` ones are narrow)."""
  if name.startswith("segformer_"):
    sizes = {
      "b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256),
      "b2": ([64, 128, 320, 512], [3, 4, 6, 3], 768),
      "tiny": ([8, 16, 24, 32], [1, 1, 1, 1], 16),
    }[name.split("_", 1)[1]]
    heads = [1, 2, 3, 4] if name.endswith("tiny") else [1, 2, 5, 8]
    config = transformers.SegformerConfig(
      num_labels=num_labels,
      hidden_sizes=sizes[0],
      depths=sizes[1],
      num_attention_heads=heads,
      decoder_hidden_size=sizes[2],
    )
    return transformers.SegformerForSemanticSegmentation(config)
  backbone = {
    "convnext_tiny": transformers.ConvNextConfig(
      hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3], out_features=_STAGES
    ),
    "swin_tiny": transformers.SwinConfig(
      embed_dim=96,
      depths=[2, 2, 6, 2],
      num_heads=[3, 6, 12, 24],
      window_size=7,
      out_features=_STAGES,
    ),
  }[name.split("_", 1)[1]]
  config = transformers.UperNetConfig(backbone_config=backbone, num_labels=num_labels)
  return transformers.UperNetForSemanticSegmentation(config)


def randomise(model: torch.nn.Module) -> torch.nn.Module:
  torch.manual_seed(0)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 1.5)
      if isinstance(module, torch.nn.BatchNorm2d | torch.nn.LayerNorm):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
    for name, parameter in model.named_parameters():
      if "layer_scale" in name or "relative_position_bias_table" in name:
        parameter.uniform_(-1, 1)
  return model.eval()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True)
  parser.add_argument("--sizes", default="512x512,97x75")
  parser.add_argument("--num_labels", type=int, default=150)
  parser.add_argument("--out", required=True)
  parser.add_argument("--image", help="Also `labels`: the argmax on this RGB file's pixels.")
  args = parser.parse_args()
  model = randomise(build(args.model, args.num_labels))
  model.save_pretrained(args.out)
  rng = np.random.default_rng(0)
  arrays = {"parameters": np.int64(sum(p.numel() for p in model.parameters()))}
  for size in args.sizes.split(","):
    h, w = map(int, size.split("x"))
    image = rng.normal(size=(1, 3, h, w)).astype(np.float32)
    with torch.no_grad():
      logits = model(pixel_values=torch.from_numpy(image)).logits
      logits = torch.nn.functional.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
    arrays[f"image_{size}"] = image.transpose(0, 2, 3, 1)
    arrays[f"logits_{size}"] = logits.numpy().transpose(0, 2, 3, 1)
  if args.image:
    from PIL import Image

    # SegformerImageProcessor's normalisation, without its resize.
    pixels = np.asarray(Image.open(args.image).convert("RGB"), np.float32) / 255
    pixels = (pixels - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    image = torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
      logits = model(pixel_values=image).logits
      logits = torch.nn.functional.interpolate(
        logits, image.shape[2:], mode="bilinear", align_corners=False
      )
    arrays["labels"] = logits.argmax(1)[0].numpy()
  np.savez(f"{args.out}/expected.npz", **arrays)


if __name__ == "__main__":
  main()
