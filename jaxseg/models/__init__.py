"""Model registry: `config.model.name` -> network class; `create_model(config)`.

Every other field of `config.model` is passed to the class as a keyword
argument, so a config sets exactly the attributes the model documents.
Networks with a `backbone` attribute take their trunk from
`jaxseg.models.backbones.BACKBONES` and say which endpoints they read
(`endpoints_read`); `create_model` checks both before anything is traced.
"""

import dataclasses
import functools

import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import (
  backbones,
  deeplab,
  fastscnn,
  fcn,
  lraspp,
  onednn,
  pspnet,
  segformer,
  segnet,
  unet,
  upernet,
)

# A class, or a partial of one that fixes the attributes naming a variant.
MODELS: dict[str, type[nn.Module] | functools.partial] = {
  "fcn32s": functools.partial(fcn.FCN, stride=32),
  "fcn16s": functools.partial(fcn.FCN, stride=16),
  "fcn8s": functools.partial(fcn.FCN, stride=8),
  "segnet": segnet.SegNet,
  "unet": unet.UNet,
  "pspnet": pspnet.PSPNet,
  "deeplabv3": deeplab.DeepLabV3,
  "deeplabv3plus": functools.partial(deeplab.DeepLabV3, decoder=True),
  "lraspp": lraspp.LRASPP,
  "fastscnn": fastscnn.FastSCNN,
  "segformer": segformer.SegFormer,
  "upernet": upernet.UPerNet,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Builds the model `config.model` describes, checking every key first.

  Also sets the process's convolution backend from `config.conv_backend`
  (read when the model is traced; see `onednn`).
  """
  kwargs = dict(config.model)
  name = kwargs.pop("name")
  # Read by `training.state` and `training.runs`, not model attributes.
  kwargs.pop("backbone_weights", None)
  kwargs.pop("weights", None)
  if name not in MODELS:
    raise errors.InvalidInput(
      f"config.model.name={name!r} is not a known model; known: {sorted(MODELS)}"
    )
  cls = MODELS[name]
  module = cls.func if isinstance(cls, functools.partial) else cls
  fixed = set(cls.keywords) if isinstance(cls, functools.partial) else set()
  fields = {f.name for f in dataclasses.fields(module)} - {"parent", "name"} - fixed
  for key in kwargs:
    if key not in fields:
      raise errors.InvalidInput(
        f"config.model.{key} is not an attribute {name!r} takes; "
        f"it takes: {sorted(fields - {'num_classes', 'dtype'})}"
      )
  if config.dtype not in DTYPES:
    raise errors.InvalidInput(f"config.dtype={config.dtype!r} must be one of {sorted(DTYPES)}")
  onednn.set_backend(config.get("conv_backend", "auto"))
  for key, value in kwargs.items():
    if isinstance(value, list):
      kwargs[key] = tuple(value)
  model = cls(num_classes=num_classes, dtype=DTYPES[config.dtype], **kwargs)
  if hasattr(model, "backbone"):
    backbones.check(
      model.backbone, model.endpoints_read(), repr(name), getattr(model, "output_stride", None)
    )
  return model
