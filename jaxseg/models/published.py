"""Whole published segmentation networks -> jaxseg's variables.

Reads the Hugging Face Hub's layout of transformers' checkpoints
(`SegformerForSemanticSegmentation`, e.g. `nvidia/segformer-b0-finetuned-ade-512-512`;
`UperNetForSemanticSegmentation` on ConvNeXt or Swin, e.g.
`openmmlab/upernet-convnext-tiny`) and torchvision's segmentation
checkpoints (`deeplabv3_resnet50` ...), renamed onto jaxseg's networks by
the tables below: linear weights `[out, in]` become kernels `[in, out]`,
convolutions OIHW become HWIO, norms' `weight` becomes `scale`, BatchNorm's
running statistics `batch_stats`. Nothing is dropped silently: a tensor no
rule maps is an error, and the few that jaxseg's network has no place for
(torchvision's auxiliary classifier at inference, Swin's unused final norm)
are named in the summary.

`config.model.weights` names such a file (`models.fetch` downloads one by
name); `load` returns the variables and the class names the checkpoint
carries.
"""

import json
import os
import re

import numpy as np

from jaxseg import errors
from jaxseg.models import pretrained

# (pattern, replacement) applied in order to a tensor's name (its module path,
# without the leaf); the result's dots become slashes.
_SEGFORMER = [
  (r"^segformer\.encoder\.patch_embeddings\.(\d+)\.proj$", r"backbone.stage\1_patch_embed"),
  (r"^segformer\.encoder\.patch_embeddings\.(\d+)\.layer_norm$", r"backbone.stage\1_patch_norm"),
  (r"^segformer\.encoder\.layer_norm\.(\d+)$", r"backbone.stage\1_norm"),
  (r"^segformer\.encoder\.block\.(\d+)\.(\d+)\.", r"backbone.stage\1_block\2."),
  (r"\.attention\.self\.(query|key|value|sr)$", r".attention.\1"),
  (r"\.attention\.self\.layer_norm$", ".attention.sr_norm"),
  (r"\.attention\.output\.dense$", ".attention.out"),
  (r"\.layer_norm_1$", ".norm1"),
  (r"\.layer_norm_2$", ".norm2"),
  (r"\.mlp\.dense1$", ".mlp.fc1"),
  (r"\.mlp\.dense2$", ".mlp.fc2"),
  (r"\.mlp\.dwconv\.dwconv$", ".mlp.dwconv"),
  (r"^decode_head\.linear_c\.(\d+)\.proj$", r"decode_head.linear_c\1"),
  (r"^decode_head\.linear_fuse$", "decode_head.linear_fuse.conv"),
  (r"^decode_head\.batch_norm$", "decode_head.linear_fuse.bn"),
  (r"^decode_head\.classifier$", "classifier"),
]
_UPERNET_HEAD = [
  (r"\.batch_norm$", ".bn"),
  (r"^decode_head\.psp_modules\.(\d+)\.1\.", r"decode_head.psp\1."),
  (r"^decode_head\.bottleneck\.", "decode_head.psp_bottleneck."),
  (r"^decode_head\.lateral_convs\.(\d+)\.", r"decode_head.lateral\1."),
  (r"^decode_head\.fpn_convs\.(\d+)\.", r"decode_head.fpn\1."),
  (r"^decode_head\.classifier$", "classifier"),
  (r"^auxiliary_head\.convs\.0\.", "aux_head.conv."),
  (r"^auxiliary_head\.classifier$", "aux_head.classifier"),
  (r"^backbone\.hidden_states_norms\.stage(\d)$", lambda m: f"backbone.norm{int(m[1]) - 1}"),
]
_CONVNEXT = [
  (r"^backbone\.embeddings\.patch_embeddings$", "backbone.stem"),
  (r"^backbone\.embeddings\.layernorm$", "backbone.stem_norm"),
  (r"^backbone\.encoder\.stages\.(\d+)\.downsampling_layer\.0$", r"backbone.downsample\1_norm"),
  (r"^backbone\.encoder\.stages\.(\d+)\.downsampling_layer\.1$", r"backbone.downsample\1"),
  (r"^backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"backbone.stage\1_block\2."),
  (r"\.layernorm$", ".norm"),
]
_SWIN = [
  (r"^backbone\.embeddings\.patch_embeddings\.projection$", "backbone.patch_embed"),
  (r"^backbone\.embeddings\.norm$", "backbone.patch_norm"),
  (r"^backbone\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.", r"backbone.stage\1_block\2."),
  (r"^backbone\.encoder\.layers\.(\d+)\.downsample\.", r"backbone.stage\1_merge."),
  (r"\.attention\.self\.(query|key|value|relative_position_bias_table)$", r".attention.\1"),
  (r"\.attention\.output\.dense$", ".attention.out"),
  (r"\.layernorm_before$", ".norm1"),
  (r"\.layernorm_after$", ".norm2"),
  (r"\.intermediate\.dense$", ".fc1"),
  (r"\.output\.dense$", ".fc2"),
]
# Buffers jaxseg derives (a step counter, Swin's index table): not weights.
_DERIVED = re.compile(r"(num_batches_tracked|relative_position_index)$")
# transformers' Swin keeps its classifier's final norm, which no feature map uses.
_UNUSED = re.compile(r"^backbone\.swin\.layernorm\.")

# torchvision's segmentation networks: module renames onto jaxseg's DeepLabV3,
# LR-ASPP (its backbone is `features` itself, an IntermediateLayerGetter).
_TORCHVISION = [
  (r"^backbone\.(\d+)\.", r"backbone.features.\1."),
  (r"^classifier\.0\.convs\.0\.0$", "aspp.conv1x1.conv"),
  (r"^classifier\.0\.convs\.0\.1$", "aspp.conv1x1.bn"),
  (r"^classifier\.0\.convs\.([123])\.0$", lambda m: f"aspp.atrous{int(m[1]) - 1}.conv"),
  (r"^classifier\.0\.convs\.([123])\.1$", lambda m: f"aspp.atrous{int(m[1]) - 1}.bn"),
  (r"^classifier\.0\.convs\.4\.1$", "aspp.image_pool.conv"),
  (r"^classifier\.0\.convs\.4\.2$", "aspp.image_pool.bn"),
  (r"^classifier\.0\.project\.0$", "aspp.project.conv"),
  (r"^classifier\.0\.project\.1$", "aspp.project.bn"),
  (r"^classifier\.1$", "head.conv"),
  (r"^classifier\.2$", "head.bn"),
  (r"^classifier\.4$", "classifier"),
  (r"^aux_classifier\.0$", "aux_head.conv.conv"),
  (r"^aux_classifier\.1$", "aux_head.conv.bn"),
  (r"^aux_classifier\.4$", "aux_head.classifier"),
]
# torchvision's FCN head is PSPNet's without a pyramid (`configs/torchvision.py`).
_TORCHVISION_FCN = [
  (r"^classifier\.0$", "bottleneck.conv"),
  (r"^classifier\.1$", "bottleneck.bn"),
  (r"^classifier\.4$", "classifier"),
  *[rule for rule in _TORCHVISION if rule[0].startswith("^aux")],
]
# LR-ASPP's head keeps torchvision's names (`classifier.cbr.0` ...).
_TORCHVISION_LRASPP = [(r"^backbone\.(\d+)\.", r"backbone.features.\1.")]


def detect(tensors) -> str:
  """Which published family a state dict's names describe."""
  keys = set(tensors)
  if any(k.startswith("segformer.encoder.") for k in keys):
    return "segformer"
  if any(k.startswith("backbone.encoder.stages.") for k in keys):
    return "upernet_convnext"
  if any(k.startswith("backbone.encoder.layers.") for k in keys):
    return "upernet_swin"
  if any(k.startswith("classifier.cbr.") for k in keys):
    return "torchvision_lraspp"
  if any(k.startswith("classifier.0.convs.") for k in keys):
    return "torchvision_deeplabv3"
  if "classifier.0.weight" in keys and "backbone.conv1.weight" in keys:
    return "torchvision_fcn"
  sample = ", ".join(sorted(keys)[:4])
  raise errors.InvalidInput(
    "not a checkpoint of a network jaxseg imports (transformers' SegFormer or UPerNet on "
    f"ConvNeXt/Swin, torchvision's DeepLabV3, FCN or LR-ASPP); names: {sample}, ..."
  )


_RULES = {
  "segformer": _SEGFORMER,
  "upernet_convnext": _UPERNET_HEAD + _CONVNEXT,
  "upernet_swin": _UPERNET_HEAD + _SWIN,
  "torchvision_deeplabv3": _TORCHVISION,
  "torchvision_lraspp": _TORCHVISION_LRASPP,
  "torchvision_fcn": _TORCHVISION_FCN,
}


def to_jaxseg(tensors: dict[str, np.ndarray], family: str) -> tuple[dict, list[str]]:
  """A published state dict of `family` -> `(flat, unused)`: jaxseg paths
  ("params/backbone/stage0_patch_embed/kernel", "batch_stats/…") to arrays,
  and the names of the tensors left out."""
  flat, unused = {}, []
  for key, value in tensors.items():
    if _DERIVED.search(key):
      continue
    if _UNUSED.search(key):
      unused.append(key)
      continue
    module, leaf = key.rsplit(".", 1)
    if leaf in ("relative_position_bias_table", "layer_scale_parameter"):
      module, leaf = f"{module}.{leaf}", ""
    for pattern, replacement in _RULES[family]:
      module = re.sub(pattern, replacement, module)
    path = module.replace(".", "/")
    if leaf == "":  # A parameter of its own, stored as jaxseg stores it.
      name = path.rsplit("/", 1)
      renamed = {"layer_scale_parameter": "layer_scale"}.get(name[-1], name[-1])
      flat[f"params/{name[0]}/{renamed}"] = value
    elif leaf == "weight" and value.ndim == 2:  # Linear: [out, in] -> [in, out].
      flat[f"params/{path}/kernel"] = value.T
    else:
      converted_path, converted = pretrained.torch_layout_to_jaxseg(f"{module}.{leaf}", value)
      flat[converted_path] = converted
  return flat, sorted(unused)


def label_names(directory: str) -> tuple[str, ...] | None:
  """The class names of a Hub checkpoint's `config.json` (`id2label`), if any."""
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    id2label = json.load(f).get("id2label") or {}
  return tuple(id2label[k] for k in sorted(id2label, key=int)) or None


def load(path: str) -> tuple[dict, str, list[str], tuple[str, ...] | None]:
  """Reads a published checkpoint: a file, or a Hub snapshot's directory
  (`model.safetensors` or `pytorch_model.bin`, and `config.json`).

  Returns `(flat, family, unused, class_names)`.
  """
  names = None
  if os.path.isdir(path):
    names = label_names(path)
    for candidate in ("model.safetensors", "pytorch_model.bin"):
      if os.path.isfile(os.path.join(path, candidate)):
        path = os.path.join(path, candidate)
        break
    else:
      raise errors.MissingInput(f"{path!r} holds no model.safetensors or pytorch_model.bin")
  tensors, _ = pretrained.read_state_dict(path)
  family = detect(tensors)
  flat, unused = to_jaxseg(tensors, family)
  return flat, family, unused, names


def network_values(
  weights: str, abstract_variables: dict, *, class_names, fine_tune: bool
) -> tuple[dict, str]:
  """Reads `config.model.weights` (fetching a name) and fits it to the model.

  Args:
    weights: a path, `hf:ORG/NAME` or `torchvision:NAME` (`models.fetch`).
    abstract_variables: the model's `{"params", "batch_stats"}` (shapes suffice).
    class_names: the run's classes, compared with the checkpoint's.
    fine_tune: a checkpoint for another number of classes is the start of
      training: its classifiers keep their random initialisation. Otherwise
      (prediction) that is an error naming both.

  Returns:
    `(values, summary)`: full paths ("params/backbone/…") to arrays, and a
    line for the log.
  """
  from jaxseg.models import fetch

  source = f"config.model.weights={weights!r}"
  path = fetch.resolve(weights)
  try:
    flat, family, unused, names = load(path)
  except ValueError as e:
    raise errors.InvalidInput(f"{source}: {e}") from None
  target = pretrained.flatten_dict(abstract_variables)
  # Training uses the auxiliary head; inference builds none.
  if not any(k.split("/")[1] == "aux_head" for k in target):
    unused += [k for k in flat if k.split("/")[1] == "aux_head"]
    flat = {k: v for k, v in flat.items() if k.split("/")[1] != "aux_head"}
  reinit = [k for k in target if k in flat and flat[k].shape != target[k].shape]
  if reinit and not fine_tune:
    classes = flat.get("params/classifier/bias")
    count = f"{classes.shape[0]} classes" if classes is not None else "other shapes"
    raise errors.InvalidInput(
      f"{source} classifies {count}"
      + (f" ({', '.join(names[:4])}, ...)" if names else "")
      + f"; the config's dataset has {len(class_names)}: pick its dataset "
      "(e.g. configs/segformer.py:b0,ade20k), or train from it to fine-tune"
    )
  kept = {k: v for k, v in flat.items() if k not in reinit}
  pretrained.check_fits(kept, {k: v for k, v in target.items() if k not in reinit}, source)
  summary = f"Weights {weights} ({family}): {len(kept)} of {len(target)} arrays"
  if reinit:
    summary += f"; re-initialised for {len(class_names)} classes: {', '.join(reinit)}"
  if names and not reinit and tuple(names) != tuple(class_names) and len(names) == len(class_names):
    summary += f"; its class names differ from the dataset's ({names[0]!r} vs {class_names[0]!r})"
  if unused:
    summary += f"; not used: {len(unused)} ({', '.join(unused[:3])}, ...)"
  return kept, summary
