"""Backbone registry: `config.model.backbone` -> a trunk that returns endpoints.

A backbone is a Flax module whose `__call__(image, *, train)` returns
`(x, endpoints)`: its last feature map and a dict of named feature maps —
`stride4` .. `stride32` by the stride of the undilated network, plus
family-specific taps (VGG's `pool1`..`pool5`, `fc7`, pooling indices).
Networks take their trunk from here by name (`create`) and say which
endpoints they read; `check` fails, naming the backbone and the endpoint,
before anything is traced.

Adding a backbone: a module file with the trunk (and, for ImageNet weights,
`detect_weights` and `IMAGENET_CLASSIFIER`, and `import_tensor` for tensors
the generic renaming does not cover; see `resnet.py`, `vgg.py`),
and one line per variant in `BACKBONES`.
"""

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

from flax import linen as nn

from jaxseg import errors
from jaxseg.models import convnext, mit, mobilenet, resnet, swin, vgg


class WeightFormat(NamedTuple):
  """How a family's torchvision/timm weight files read (`models.pretrained`).

  Attributes:
    detect: state-dict names -> the registered name they describe, or None
      when they are not this family's (raises for a near miss, saying why).
    imagenet_classifier: names of the ImageNet classifier, which a
      segmentation trunk has no place for.
    import_tensor: `(module, leaf, array)` -> `(jaxseg path, array)` for the
      tensors that need more than the generic renaming (dots to slashes, OIHW
      to HWIO, BatchNorm's names), else None; None when no tensor does.
  """

  detect: Callable[[set[str]], str | None]
  imagenet_classifier: re.Pattern
  import_tensor: Callable | None = None


RESNET_WEIGHTS = WeightFormat(resnet.detect_weights, resnet.IMAGENET_CLASSIFIER)
MOBILENET_WEIGHTS = WeightFormat(mobilenet.detect_weights, mobilenet.IMAGENET_CLASSIFIER)
VGG_WEIGHTS = WeightFormat(vgg.detect_weights, vgg.IMAGENET_CLASSIFIER, vgg.import_tensor)


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A registered trunk.

  Attributes:
    module: the trunk's class (or a partial of one fixing its variant).
    endpoints: the names of the feature maps it can return.
    output_strides: the output strides it can run at (dilation replaces
      stride past them).
    weights: how its ImageNet weight files read; None: none importable.
  """

  module: Callable[..., nn.Module]
  endpoints: tuple[str, ...]
  output_strides: tuple[int, ...]
  weights: WeightFormat | None = None

  @property
  def settings(self) -> set[str]:
    """The keyword arguments `module` takes."""
    cls = self.module.func if isinstance(self.module, functools.partial) else self.module
    fixed = set(self.module.keywords) if isinstance(self.module, functools.partial) else set()
    return {f.name for f in dataclasses.fields(cls)} - {"parent", "name"} - fixed


BACKBONES: dict[str, Backbone] = {
  "resnet18": Backbone(resnet.ResNet18, resnet.ENDPOINTS, (8, 16, 32), RESNET_WEIGHTS),
  "resnet34": Backbone(resnet.ResNet34, resnet.ENDPOINTS, (8, 16, 32), RESNET_WEIGHTS),
  "resnet50": Backbone(resnet.ResNet50, resnet.ENDPOINTS, (8, 16, 32), RESNET_WEIGHTS),
  "resnet101": Backbone(resnet.ResNet101, resnet.ENDPOINTS, (8, 16, 32), RESNET_WEIGHTS),
  "mobilenet_v2": Backbone(
    mobilenet.MobileNetV2, mobilenet.V2_ENDPOINTS, (8, 16, 32), MOBILENET_WEIGHTS
  ),
  "mobilenet_v3_large": Backbone(
    mobilenet.MobileNetV3Large, mobilenet.V3_LARGE_ENDPOINTS, (16, 32), MOBILENET_WEIGHTS
  ),
  "vgg16": Backbone(vgg.VGG16, vgg.ENDPOINTS, (32,), VGG_WEIGHTS),
  "vgg16_bn": Backbone(vgg.VGG16BN, vgg.ENDPOINTS, (32,), VGG_WEIGHTS),
  **{f"mit_b{i}": Backbone(getattr(mit, f"MiT_B{i}"), mit.ENDPOINTS, (32,)) for i in range(6)},
  "convnext_tiny": Backbone(convnext.ConvNeXtTiny, convnext.ENDPOINTS, (32,)),
  "convnext_small": Backbone(convnext.ConvNeXtSmall, convnext.ENDPOINTS, (32,)),
  "convnext_base": Backbone(convnext.ConvNeXtBase, convnext.ENDPOINTS, (32,)),
  "swin_tiny": Backbone(swin.SwinTiny, swin.ENDPOINTS, (32,)),
  "swin_small": Backbone(swin.SwinSmall, swin.ENDPOINTS, (32,)),
  "swin_base": Backbone(swin.SwinBase, swin.ENDPOINTS, (32,)),
  # Narrow variants for tests.
  "_mit_tiny": Backbone(mit._MiT_tiny, mit.ENDPOINTS, (32,)),
  "_convnext_tiny_test": Backbone(convnext._ConvNeXt_tiny_test, convnext.ENDPOINTS, (32,)),
  "_swin_tiny_test": Backbone(swin._Swin_tiny_test, swin.ENDPOINTS, (32,)),
}

# A network's own name for a setting it passes on, for error messages.
_CONFIG_KEYS = {"width": "backbone_width"}


def get(name: str) -> Backbone:
  """The registered backbone `name`; raises naming `config.model.backbone`."""
  if name not in BACKBONES:
    raise errors.InvalidInput(
      f"config.model.backbone={name!r} is not a registered backbone; known: {sorted(BACKBONES)}"
    )
  return BACKBONES[name]


def check(name: str, endpoints: Iterable[str], model: str, output_stride: int | None = None):
  """Raises unless backbone `name` has every one of `endpoints` (and can run
  at `output_stride`), naming what is missing and what `model` needs it for."""
  backbone = get(name)
  missing = [e for e in endpoints if e not in backbone.endpoints]
  if missing:
    raise errors.InvalidInput(
      f"config.model.backbone={name!r} has no endpoint {missing[0]!r}, which {model} reads; "
      f"it has: {', '.join(backbone.endpoints)}"
    )
  if output_stride is not None and output_stride not in backbone.output_strides:
    raise errors.InvalidInput(
      f"config.model.output_stride={output_stride}: backbone {name!r} runs at output stride "
      f"{', '.join(map(str, backbone.output_strides))}"
    )


def create(
  name: str, *, output_stride: int | None = None, module_name: str = "backbone", **settings
) -> nn.Module:
  """Backbone `name` as the submodule `module_name`, with the `settings` it takes.

  `output_stride` is checked against what the backbone supports (and passed
  on where the trunk has the setting). A setting that is None keeps the
  trunk's default; one the trunk does not take is dropped when it is False
  or empty (not asked for) and an error otherwise, so nothing a config sets
  is silently ignored.
  """
  backbone = get(name)
  takes = backbone.settings
  if output_stride is not None:
    check(name, (), f"{name}", output_stride)
    if "output_stride" in takes:
      settings["output_stride"] = output_stride
  kwargs = {}
  for key, value in settings.items():
    if value is None:  # Not set: the backbone's own default.
      continue
    if key in takes:
      kwargs[key] = value
    elif value is not False and value != ():
      raise errors.InvalidInput(
        f"config.model.{_CONFIG_KEYS.get(key, key)}={value!r} does not apply to backbone "
        f"{name!r} (it takes: {', '.join(sorted(takes))})"
      )
  return backbone.module(**kwargs, name=module_name)
