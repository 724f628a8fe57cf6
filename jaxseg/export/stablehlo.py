"""The exported function, and its StableHLO form (`jax.export`): `model.jax`.

`padded_forward` is what every format exports: the network with its
preprocessing, images of any height and width padded inside the graph.
`export_any_size` traces an export with symbolic batch, height and width,
falling back to the tile size for networks that need fixed shapes.
"""

import jax
import jax.numpy as jnp

from jaxseg.data import preprocessing
from jaxseg.inference import forward_logits
from jaxseg.models import onednn, spatial

# Exports pad images inside the graph to a multiple of this (the largest
# output stride of the zoo), so that any height and width runs.
SIZE_MULTIPLE = 32


def padded_forward(model, variables, norm: preprocessing.Normalization):
  """The exported function: `images [N, h, w, bands] -> logits [N, h, w, C]`
  for any h, w (symbolic ones included), padded to a multiple of
  SIZE_MULTIPLE with `norm.pad` inside, logits sliced back."""

  def serve(images):
    x = spatial.pad_to_multiple(images, SIZE_MULTIPLE, norm.pad)
    return spatial.crop(forward_logits(model, variables, x, norm), images.shape[1:3])

  return serve


def export_any_size(name: str, export_fn, norm: preprocessing.Normalization, size):
  """`export_fn(spec)` for images with symbolic batch, height and width; if
  the network needs fixed shapes (tracing fails), for the tile `size` with a
  symbolic batch, said so. Returns the result and whether height and width
  are symbolic."""
  dtype = jnp.dtype(norm.dtype)
  try:
    b, h, w = jax.export.symbolic_shape("batch, height, width")
    return export_fn(jax.ShapeDtypeStruct((b, h, w, norm.channels), dtype)), True
  except Exception as e:  # Any tracing failure: the network needs fixed shapes.
    print(f"{name}: height and width fixed at {tuple(size)} ({type(e).__name__})")
    (b,) = jax.export.symbolic_shape("batch")
    return export_fn(jax.ShapeDtypeStruct((b, *size, norm.channels), dtype)), False


def stablehlo_export(model, variables, norm, size, platforms):
  """`jax.export` of `padded_forward`: any batch and, where the network
  allows, any height and width, else the tile size. Returns the `Exported`
  and whether its height and width are symbolic."""
  serve = jax.export.export(jax.jit(padded_forward(model, variables, norm)), platforms=platforms)
  # XLA's convolutions only: an export runs where jaxseg's library is absent.
  with onednn.backend("xla"):
    return export_any_size("stablehlo", serve, norm, size)
