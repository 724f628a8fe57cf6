"""ImageNet backbones from torchvision and timm files: read, convert, check.

A backbone file is one of:
- a torchvision (or timm) state dict saved by `torch.save` (`.pth`, `.pt`,
  `.bin`), read with `torch.load(weights_only=True)`, so nothing but tensors
  is unpickled (needs torch: `pip install -r requirements-convert.txt`);
- the same state dict as `.safetensors` (timm's and the Hugging Face Hub's
  format), read with `safetensors.numpy`, no torch needed;
- a file written by `python -m jaxseg.convert` (`.safetensors` in jaxseg's
  layout), no torch needed.

Conversion is renaming and transposing: jaxseg's ResNet and VGG name their
modules as torchvision does (`layer1/0/conv1`, `features/0`), convolution
kernels go from OIHW to HWIO, BatchNorm's `weight`/`bias` become
`scale`/`bias` and its running statistics `batch_stats` `mean`/`var`.
VGG's fully connected `classifier.0`/`classifier.3` (timm: `pre_logits.fc1`/
`fc2`) become FCN's convolutional `fc6` (7×7) and `fc7` (1×1). The ImageNet
classifier (`fc`, `classifier.6`, `head.fc`) is not used; every other tensor
must land on a parameter of the model, and every backbone parameter must come
from the file.
"""

import os
import re
from collections.abc import Mapping

import numpy as np
from flax import traverse_util

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "vgg16", "vgg16_bn")
JAXSEG_FORMAT = "jaxseg-backbone"
# Tensors of an ImageNet checkpoint that a segmentation backbone does not use.
_IMAGENET_CLASSIFIER = re.compile(r"^(fc|classifier\.6|head\.fc)\.")
_NOT_PARAMETERS = re.compile(r"\.num_batches_tracked$")

Flat = dict[str, np.ndarray]  # "params/layer1/0/conv1/kernel" -> array


def flatten_dict(tree: Mapping) -> dict:
  """`{"a": {"b": x}}` -> `{"a/b": x}`, the key form of this module's files."""
  return traverse_util.flatten_dict(tree, sep="/")


def unflatten_dict(flat: Mapping) -> dict:
  """`{"a/b": x}` -> `{"a": {"b": x}}`: e.g. `unflatten_dict(load(path)[0])`
  is a backbone's `{"params": ..., "batch_stats": ...}` for `ResNet50().apply`."""
  return traverse_util.unflatten_dict(dict(flat), sep="/")


def read_state_dict(path: str) -> tuple[Flat, dict[str, str]]:
  """The tensors of `path` by name, as float32 numpy arrays, and the file's
  metadata (a `.safetensors` header's; empty for torch files)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"backbone weights file {path!r} does not exist")
  if path.endswith(".safetensors"):
    from safetensors import safe_open

    tensors, metadata = {}, {}
    with safe_open(path, framework="numpy") as f:
      metadata = f.metadata() or {}
      for key in f.keys():
        tensors[key] = f.get_tensor(key)
    return tensors, metadata
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      f"reading {path!r} (a torch file) needs torch: pip install -r requirements-convert.txt, "
      "or convert it once elsewhere with `python -m jaxseg.convert`, or use a .safetensors file"
    ) from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  if (
    isinstance(state, Mapping)
    and "state_dict" in state
    and isinstance(state["state_dict"], Mapping)
  ):
    state = state["state_dict"]  # Training checkpoints wrap the weights.
  if not isinstance(state, Mapping):
    raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict of tensors")
  tensors = {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(f"{path!r}: entry {key!r} is a {type(value).__name__}, not a tensor")
    tensors[key.removeprefix("module.")] = value.detach().float().numpy()
  return tensors, {}


# (bottleneck blocks?, blocks in layer3) -> architecture.
_RESNETS = {
  (False, 2): "resnet18",
  (False, 6): "resnet34",
  (True, 6): "resnet50",
  (True, 23): "resnet101",
}


def detect_arch(keys) -> str:
  """Which of `ARCHS` a torchvision/timm state dict's names describe."""
  keys = set(keys)
  if "conv1.0.weight" in keys:
    raise ValueError(
      "this is a deep-stem ResNet (timm's ResNet-C/D variants, 'conv1.0.weight'); jaxseg's "
      f"backbones are torchvision's: {', '.join(ARCHS)}"
    )
  if "layer1.0.conv1.weight" in keys:
    blocks = len({k.split(".")[1] for k in keys if k.startswith("layer3.")})
    bottleneck = "layer1.0.conv3.weight" in keys
    arch = _RESNETS.get((bottleneck, blocks))
    if arch is None:
      kind = "bottleneck" if bottleneck else "basic-block"
      raise ValueError(f"a {kind} ResNet with {blocks} blocks in layer3 is none of {ARCHS}")
    return arch
  if "features.0.weight" in keys:
    return "vgg16_bn" if "features.1.running_mean" in keys else "vgg16"
  sample = ", ".join(sorted(keys)[:5])
  raise ValueError(f"not a torchvision/timm ResNet or VGG state dict (names: {sample}, ...)")


def _fc_as_conv(name: str, weight: np.ndarray) -> np.ndarray:
  """A VGG fully connected weight `[out, in]` as FCN's HWIO convolution."""
  if weight.ndim == 4:  # timm's ConvMlp already stores a convolution.
    return weight.transpose(2, 3, 1, 0)
  if name == "fc6":  # torchvision flattens pool5's [512, 7, 7] channel-major.
    return weight.reshape(weight.shape[0], -1, 7, 7).transpose(2, 3, 1, 0)
  return weight.T[None, None]


_RUNNING_STATS = {"running_mean": "mean", "running_var": "var"}
_VGG_FC = {
  "classifier.0": "fc6",
  "classifier.3": "fc7",
  "pre_logits.fc1": "fc6",
  "pre_logits.fc2": "fc7",
}


def torch_to_jaxseg(tensors: Flat) -> tuple[Flat, list[str]]:
  """Converts a torchvision/timm state dict to jaxseg's layout.

  Returns `(flat, unused)`: `flat` maps "params/…" and "batch_stats/…" paths
  (relative to the backbone) to arrays; `unused` names the ImageNet
  classifier's tensors, which a segmentation backbone has no place for.
  """
  flat, unused = {}, []
  for key, value in tensors.items():
    if _NOT_PARAMETERS.search(key):
      continue
    if _IMAGENET_CLASSIFIER.match(key):
      unused.append(key)
      continue
    module, leaf = key.rsplit(".", 1)
    path = module.replace(".", "/")
    if module in _VGG_FC:
      path = _VGG_FC[module]
      if leaf == "weight":
        flat[f"params/{path}/kernel"] = _fc_as_conv(path, value)
      else:
        flat[f"params/{path}/{leaf}"] = value
    elif leaf == "weight" and value.ndim == 4:
      flat[f"params/{path}/kernel"] = value.transpose(2, 3, 1, 0)
    elif leaf == "weight":  # A 1-D weight is BatchNorm's scale.
      flat[f"params/{path}/scale"] = value
    elif leaf == "bias":
      flat[f"params/{path}/bias"] = value
    elif leaf in _RUNNING_STATS:
      flat[f"batch_stats/{path}/{_RUNNING_STATS[leaf]}"] = value
    else:
      raise ValueError(f"tensor {key!r} is neither a convolution, a BatchNorm nor a classifier")
  return flat, sorted(unused)


def load(path: str) -> tuple[Flat, str, list[str]]:
  """Reads a backbone file of any supported kind.

  Returns `(flat, arch, unused)`: the arrays in jaxseg's layout, the
  architecture the file holds, and the names of the file's tensors left unused.
  """
  tensors, metadata = read_state_dict(path)
  if metadata.get("format") == JAXSEG_FORMAT:
    return tensors, metadata["arch"], []
  arch = detect_arch(tensors)
  flat, unused = torch_to_jaxseg(tensors)
  return flat, arch, unused


def save(path: str, flat: Flat, arch: str, source: str = "") -> None:
  """Writes `flat` (jaxseg's layout) as a `.safetensors` file `load` reads."""
  from safetensors.numpy import save_file

  arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()}
  save_file(arrays, path, metadata={"format": JAXSEG_FORMAT, "arch": arch, "source": source})


def model_arch(model_config) -> str | None:
  """The backbone architecture `config.model` builds (None: none importable)."""
  name = model_config.name
  if name in ("pspnet", "deeplabv3", "deeplabv3plus"):
    return model_config.backbone
  if name.startswith("fcn"):
    return "vgg16_bn" if model_config.get("batch_norm", False) else "vgg16"
  if name == "segnet":
    return "vgg16_bn"
  return None


def check_fits(flat: Flat, target: dict, source: str) -> None:
  """Raises, naming the keys, unless `flat` provides exactly the arrays of
  `target` (a flat dict of shapes-carrying leaves) with their shapes."""
  missing = sorted(set(target) - set(flat))
  extra = sorted(set(flat) - set(target))
  wrong = [
    f"{k}: {tuple(flat[k].shape)} there, {tuple(target[k].shape)} in the model"
    for k in sorted(set(flat) & set(target))
    if tuple(flat[k].shape) != tuple(target[k].shape)
  ]
  problems = []
  if missing:
    problems.append(f"missing from it ({len(missing)}): {', '.join(missing[:8])}")
  if extra:
    problems.append(f"not in the model ({len(extra)}): {', '.join(extra[:8])}")
  if wrong:
    problems.append(f"shapes differ ({len(wrong)}): {'; '.join(wrong[:8])}")
  if problems:
    raise ValueError(f"{source} does not fit the model: " + " | ".join(problems))


def backbone_values(model_config, abstract_variables: Mapping) -> tuple[Flat, str]:
  """Reads `model_config.backbone_weights` and checks it against the model.

  Args:
    model_config: `config.model`.
    abstract_variables: `{"params": ..., "batch_stats": ...}` of the model
      (shapes suffice).

  Returns:
    `(values, summary)`: `values` maps full paths ("params/backbone/conv1/kernel")
    to arrays; `summary` is a line for the log.
  """
  path = os.path.expanduser(model_config.backbone_weights)
  source = f"config.model.backbone_weights={model_config.backbone_weights!r}"
  arch = model_arch(model_config)
  if arch is None:
    raise ValueError(f"{source}: model {model_config.name!r} has no ImageNet backbone to load")
  try:
    flat, file_arch, unused = load(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{source}: {e}") from e
  except ValueError as e:
    raise ValueError(f"{source}: {e}") from e
  if file_arch != arch:
    raise ValueError(f"{source} holds a {file_arch}; the model's backbone is a {arch}")
  target = {
    f"{collection}/backbone/{k}": v
    for collection in ("params", "batch_stats")
    for k, v in flatten_dict(abstract_variables.get(collection, {}).get("backbone", {})).items()
  }
  values = {"{}/backbone/{}".format(*k.split("/", 1)): v for k, v in flat.items()}
  if "params/backbone/fc6/kernel" not in target:  # SegNet: VGG without fc6/fc7.
    fully_connected = [k for k in values if k.split("/")[2] in ("fc6", "fc7")]
    unused += [f"{k} (the model has no fc6/fc7)" for k in fully_connected]
    values = {k: v for k, v in values.items() if k not in fully_connected}
  check_fits(values, target, source)
  summary = f"Backbone {arch} from {path}: {len(values)} arrays"
  if unused:
    summary += f"; ImageNet classifier not used: {', '.join(unused)}"
  return values, summary
