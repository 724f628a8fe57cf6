"""Model registry: `config.model.name` -> module class; `create_model(config)`.

Every other field of `config.model` is passed to the class as a keyword
argument, so a config sets exactly the attributes the model documents.
"""

import dataclasses

import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jaxseg.models import pspnet

MODELS: dict[str, type[nn.Module]] = {
  "pspnet": pspnet.PSPNet,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Builds the model `config.model` describes, checking every key first."""
  kwargs = dict(config.model)
  name = kwargs.pop("name")
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r} is not a known model; known: {sorted(MODELS)}")
  cls = MODELS[name]
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  for key in kwargs:
    if key not in fields:
      raise ValueError(
        f"config.model.{key} is not an attribute of {cls.__name__}; "
        f"it takes: {sorted(fields - {'num_classes', 'dtype'})}"
      )
  if config.dtype not in DTYPES:
    raise ValueError(f"config.dtype={config.dtype!r} must be one of {sorted(DTYPES)}")
  for key, value in kwargs.items():
    if isinstance(value, list):
      kwargs[key] = tuple(value)
  return cls(num_classes=num_classes, dtype=DTYPES[config.dtype], **kwargs)
