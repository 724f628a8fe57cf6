"""SegFormer (Xie et al. 2021, https://arxiv.org/abs/2105.15203).

A Mix Transformer encoder (`mit.py`, MiT-B0 .. B5 in the backbone registry)
and the all-MLP decoder (`heads.AllMLPHead`: 256 channels for B0/B1, 768
otherwise), classifying at stride 4; logits are resized to the input. The
same computation as transformers' `SegformerForSemanticSegmentation`, whose
published checkpoints (`nvidia/segformer-b0-finetuned-ade-512-512` ...)
`config.model.weights` imports (`models.published`).
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg.models import backbones, heads, layers


class SegFormer(nn.Module):
  """SegFormer.

  Attributes:
    num_classes: number of classes.
    backbone: a name in `backbones.BACKBONES` with `stride4` .. `stride32`
      endpoints (the paper: `mit_b0` .. `mit_b5`).
    decoder_features: the all-MLP decoder's width.
    drop_path_rate: the encoder's stochastic depth (0.1 in the paper).
    dropout_rate: dropout before the classifier.
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}`.
  """

  num_classes: int
  backbone: str = "mit_b0"
  decoder_features: int = 256
  drop_path_rate: float = 0.1
  dropout_rate: float = 0.1
  dtype: layers.Dtype = jnp.float32

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads."""
    return ("stride4", "stride8", "stride16", "stride32")

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    _, endpoints = backbones.create(
      self.backbone, drop_path_rate=self.drop_path_rate, dtype=self.dtype
    )(image, train=train)
    x = heads.AllMLPHead(self.decoder_features, self.dtype, name="decode_head")(
      [endpoints[e] for e in self.endpoints_read()], train=train
    )
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    return {
      "logits": heads.logits_at(x, image.shape[1:3], self.num_classes, self.dtype, train=train)
    }


# For tests: a narrow one-block-per-stage MiT and a narrow decoder.
_tiny = functools.partial(SegFormer, backbone="_mit_tiny", decoder_features=16)
