"""Converts a torchvision/timm backbone file once into jaxseg's layout.

    python -m jaxseg.convert --arch=resnet50 --input=resnet50-11ad3fa6.pth \
        --output=resnet50_imagenet.safetensors

Reading a `.pth` needs torch (`pip install -r requirements-convert.txt`); the
output is a `.safetensors` file that `config.model.backbone_weights` loads
with the core install alone. The ImageNet classifier is left out.
"""

import sys

from absl import app, flags

from jaxseg import errors
from jaxseg.models import pretrained

flags.DEFINE_enum("arch", None, pretrained.ARCHS, "Architecture the file must hold.")
flags.DEFINE_string("input", None, "torchvision/timm state dict: .pth, .pt, .bin or .safetensors.")
flags.DEFINE_string("output", None, "Where to write jaxseg's .safetensors file.")
flags.mark_flags_as_required(["arch", "input", "output"])


def convert(arch: str, input_path: str, output_path: str) -> str:
  """Converts `input_path` (which must hold `arch`) to `output_path`; returns a summary."""
  if not output_path.endswith(".safetensors"):
    raise errors.InvalidInput(f"--output={output_path!r} must end in .safetensors")
  flat, found, unused = pretrained.load(input_path)
  if found != arch:
    raise errors.InvalidInput(
      f"--input={input_path!r} holds a {found}, not the --arch={arch} asked for"
    )
  pretrained.save(output_path, flat, arch, source=input_path)
  params = sum(v.size for k, v in flat.items() if k.startswith("params/"))
  summary = f"{arch}: {len(flat)} arrays ({params:,} parameters) -> {output_path}"
  if unused:
    summary += f"\nleft out (ImageNet classifier): {', '.join(unused)}"
  return summary


def main(argv):
  del argv
  try:
    print(convert(flags.FLAGS.arch, flags.FLAGS.input, flags.FLAGS.output))
  except (ValueError, FileNotFoundError, ImportError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
