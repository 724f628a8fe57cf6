"""ImageNet backbones from torchvision and timm files: read, convert, check.

A backbone file is one of:
- a torchvision (or timm) state dict saved by `torch.save` (`.pth`, `.pt`,
  `.bin`), read with `torch.load(weights_only=True)`, so nothing but tensors
  is unpickled (needs torch: `pip install -r requirements-convert.txt`);
- the same state dict as `.safetensors` (timm's and the Hugging Face Hub's
  format), read with `safetensors.numpy`, no torch needed;
- a file written by `python -m jaxseg.convert` (`.safetensors` in jaxseg's
  layout), no torch needed.

Which backbone a file holds, and how its names map, comes from the backbone
registry (`jaxseg.models.backbones`: each family's `WeightFormat`). The
generic conversion is renaming and transposing: jaxseg's backbones name their
modules as torchvision does (`layer1/0/conv1`, `features/0`), convolution
kernels go from OIHW to HWIO, BatchNorm's `weight`/`bias` become
`scale`/`bias` and its running statistics `batch_stats` `mean`/`var`; a
family converts the rest itself (VGG's fully connected layers become FCN's
convolutional `fc6`/`fc7`). The ImageNet classifier is not used; every other
tensor must land on a parameter of the model, and every backbone parameter
must come from the file.
"""

import os
import re
from collections.abc import Mapping

import numpy as np
from flax import traverse_util

from jaxseg import errors
from jaxseg.models import backbones

JAXSEG_FORMAT = "jaxseg-backbone"
# Backbones whose weight files this module reads.
ARCHS = tuple(name for name, b in backbones.BACKBONES.items() if b.weights is not None)
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
    raise errors.MissingInput(f"backbone weights file {path!r} does not exist")
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
    raise errors.InvalidInput(
      f"{path!r} holds a {type(state).__name__}, not a state dict of tensors"
    )
  tensors = {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise errors.InvalidInput(
        f"{path!r}: entry {key!r} is a {type(value).__name__}, not a tensor"
      )
    tensors[key.removeprefix("module.")] = value.detach().float().numpy()
  return tensors, {}


def detect_arch(keys) -> str:
  """Which registered backbone a torchvision/timm state dict's names describe."""
  keys = set(keys)
  for weights in {b.weights for b in backbones.BACKBONES.values() if b.weights}:
    arch = weights.detect(keys)
    if arch is not None:
      return arch
  sample = ", ".join(sorted(keys)[:5])
  raise errors.InvalidInput(
    f"not a state dict of any backbone jaxseg reads ({', '.join(ARCHS)}; names: {sample}, ...)"
  )


_RUNNING_STATS = {"running_mean": "mean", "running_var": "var"}


def torch_to_jaxseg(tensors: Flat, arch: str) -> tuple[Flat, list[str]]:
  """Converts a torchvision/timm state dict of backbone `arch` to jaxseg's layout.

  Returns `(flat, unused)`: `flat` maps "params/…" and "batch_stats/…" paths
  (relative to the backbone) to arrays; `unused` names the ImageNet
  classifier's tensors, which a segmentation backbone has no place for.
  """
  weights = backbones.get(arch).weights
  flat, unused = {}, []
  for key, value in tensors.items():
    if _NOT_PARAMETERS.search(key):
      continue
    if weights.imagenet_classifier.match(key):
      unused.append(key)
      continue
    module, leaf = key.rsplit(".", 1)
    special = weights.import_tensor(module, leaf, value) if weights.import_tensor else None
    path, converted = special if special is not None else torch_layout_to_jaxseg(key, value)
    flat[path] = converted
  return flat, sorted(unused)


def torch_layout_to_jaxseg(key: str, value: np.ndarray) -> tuple[str, np.ndarray]:
  """One convolution or BatchNorm tensor of a torch state dict -> its jaxseg
  path ("params/…" or "batch_stats/…", dots to slashes) and value (OIHW
  kernels to HWIO)."""
  module, leaf = key.rsplit(".", 1)
  path = module.replace(".", "/")
  if leaf == "weight" and value.ndim == 4:
    return f"params/{path}/kernel", value.transpose(2, 3, 1, 0)
  if leaf == "weight":  # A 1-D weight is BatchNorm's scale.
    return f"params/{path}/scale", value
  if leaf == "bias":
    return f"params/{path}/bias", value
  if leaf in _RUNNING_STATS:
    return f"batch_stats/{path}/{_RUNNING_STATS[leaf]}", value
  raise errors.InvalidInput(
    f"tensor {key!r} is neither a convolution, a BatchNorm nor a classifier"
  )


def load(path: str) -> tuple[Flat, str, list[str]]:
  """Reads a backbone file of any supported kind.

  Returns `(flat, arch, unused)`: the arrays in jaxseg's layout, the
  architecture the file holds, and the names of the file's tensors left unused.
  """
  tensors, metadata = read_state_dict(path)
  if metadata.get("format") == JAXSEG_FORMAT:
    return tensors, metadata["arch"], []
  arch = detect_arch(tensors)
  flat, unused = torch_to_jaxseg(tensors, arch)
  return flat, arch, unused


def save(path: str, flat: Flat, arch: str, source: str = "") -> None:
  """Writes `flat` (jaxseg's layout) as a `.safetensors` file `load` reads."""
  from safetensors.numpy import save_file

  arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()}
  save_file(arrays, path, metadata={"format": JAXSEG_FORMAT, "arch": arch, "source": source})


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
    raise errors.InvalidInput(f"{source} does not fit the model: " + " | ".join(problems))


def is_input_conv(stored: tuple, wanted: tuple) -> bool:
  """Whether a kernel `[kh, kw, 3, out]` of RGB weights is the model's first
  convolution taking another number of bands."""
  stored, wanted = tuple(stored), tuple(wanted)
  return (
    len(stored) == 4 and len(wanted) == 4 and stored[2] == 3 and wanted[2] != 3
    and stored[:2] + stored[3:] == wanted[:2] + wanted[3:]
  )  # fmt: skip


def adapt_input_conv(kernel: np.ndarray, bands: int) -> np.ndarray:
  """An RGB first-convolution kernel `[kh, kw, 3, out]` for `bands` inputs, as
  timm's `adapt_input_conv` does: one band gets the sum of the RGB filters;
  more repeat them (R, G, B, R, ...) scaled by 3 / bands, so an input whose
  bands all look like the mean RGB channel gives the same response."""
  kernel = np.asarray(kernel, np.float32)
  if bands == 1:
    return kernel.sum(axis=2, keepdims=True)
  repeats = -(-bands // 3)
  return np.tile(kernel, (1, 1, repeats, 1))[:, :, :bands] * (3 / bands)


def backbone_values(model, weights_file: str, abstract_variables: Mapping) -> tuple[Flat, str]:
  """Reads `weights_file` (`config.model.backbone_weights`) and checks it
  against the backbone of `model`.

  Args:
    model: the network (`jaxseg.models.create_model`); its `backbone`
      attribute names the registered backbone the file must hold.
    weights_file: the file's path.
    abstract_variables: `{"params": ..., "batch_stats": ...}` of the model
      (shapes suffice).

  Returns:
    `(values, summary)`: `values` maps full paths ("params/backbone/conv1/kernel")
    to arrays; `summary` is a line for the log.
  """
  path = os.path.expanduser(weights_file)
  source = f"config.model.backbone_weights={weights_file!r}"
  arch = getattr(model, "backbone", None)
  if arch is None or backbones.get(arch).weights is None:
    raise errors.InvalidInput(f"{source}: {type(model).__name__} has no ImageNet backbone to load")
  try:
    flat, file_arch, unused = load(path)
  except FileNotFoundError as e:
    raise errors.MissingInput(f"{source}: {e}") from e
  except ValueError as e:
    raise errors.InvalidInput(f"{source}: {e}") from e
  if file_arch != arch:
    raise errors.InvalidInput(f"{source} holds a {file_arch}; the model's backbone is a {arch}")
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
  adapted = []
  for key, value in values.items():
    want = target.get(key)
    if want is not None and is_input_conv(value.shape, want.shape):
      values[key] = adapt_input_conv(value, want.shape[2])
      adapted.append(key)
  check_fits(values, target, source)
  summary = f"Backbone {arch} from {path}: {len(values)} arrays"
  if adapted:
    summary += f"; {', '.join(adapted)} adapted from 3 to {target[adapted[0]].shape[2]} bands"
  if unused:
    summary += f"; ImageNet classifier not used: {', '.join(unused)}"
  return values, summary
