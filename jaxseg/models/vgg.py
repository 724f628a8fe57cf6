"""VGG16 and VGG16-BN trunks, with FCN's convolutionalised classifier.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", 2015, https://arxiv.org/abs/1409.1556. The fully connected
layers become convolutions (fc6: 7×7, fc7: 1×1) as in Long et al. (FCN).

Parameter names follow torchvision's `features.<index>` numbering (a conv at
`features/0`, its BN at `features/1` in VGG16-BN ...), so ImageNet weights map
one to one; fc6/fc7 take torchvision's `classifier.0` / `classifier.3`
reshaped.
"""

import functools
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import layers

# Channels per convolution, "M" a 2×2 max pool (torchvision's configuration "D").
VGG16_CHANNELS = (
  64,
  64,
  "M",
  128,
  128,
  "M",
  256,
  256,
  256,
  "M",
  512,
  512,
  512,
  "M",
  512,
  512,
  512,
  "M",
)


class Features(nn.Module):
  """torchvision's `features`: convolutions (and BNs) named by their index.

  Attributes are those of `VGG`.
  """

  channels: Sequence[int | str]
  batch_norm: bool
  width: int
  first_padding: int
  pool_indices: bool
  dtype: layers.Dtype

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
    endpoints, index, pool = {}, 0, 0
    for v in self.channels:
      if v == "M":
        pool += 1
        if self.pool_indices:
          endpoints[f"pool{pool}_size"] = x.shape[1:3]
          x, endpoints[f"pool{pool}_indices"] = layers.max_pool_2x2_with_argmax(x)
        else:  # Ceil mode: an odd last row/column is pooled over what exists.
          x = layers.max_pool_2x2(x)
        endpoints[f"pool{pool}"] = x
        if pool >= 2:
          endpoints[f"stride{2**pool}"] = x
        index += 1
        continue
      conv = layers.Conv(
        v * self.width // 64,
        3,
        padding=self.first_padding if index == 0 else 1,
        use_bias=True,  # torchvision keeps conv biases in VGG-BN too.
        dtype=self.dtype,
        name=str(index),
      )
      index += 1
      norm = None
      if self.batch_norm:
        norm = layers.batch_norm(train, self.dtype, name=str(index))
        index += 1
      x = layers.conv_norm(conv, norm, x, train=train, activation="relu")
      index += 1  # torchvision numbers the ReLU too.
    return x, endpoints


class VGG(nn.Module):
  """VGG trunk returning named endpoints.

  Attributes:
    channels: channels per convolution, "M" for a max pool.
    batch_norm: VGG-BN (BN after every convolution).
    width: channels of the first convolutions (64 in the paper); every layer's
      channels scale with it (slim variants train on a CPU).
    fc_features: channels of fc6/fc7 (4096 in the paper); 0 leaves them out.
    dropout_rate: dropout after fc6 and fc7 (0.5 in the paper).
    first_padding: padding of the very first convolution; FCN pads by 100 so
      that its output covers any input (see `fcn.py`), 1 elsewhere.
    fc_padding: padding of fc6 (7×7): "VALID" as in FCN, or 3 to keep the
      pool5 map's size.
    pool_indices: max pools also return argmax indices (SegNet).
    dtype: computation dtype.

  Returns `(x, endpoints)`: `pool1`..`pool5` after each pool (strides 2..32),
  the same maps by stride (`stride4` = `pool2` .. `stride32` = `pool5`);
  with `pool_indices`, also `pool1_indices`.. and the pre-pool sizes
  `pool1_size`..; and, with `fc_features`, `fc7` (stride 32).
  """

  channels: Sequence[int | str] = VGG16_CHANNELS
  batch_norm: bool = False
  width: int = 64
  fc_features: int = 0
  dropout_rate: float = 0.5
  first_padding: int = 1
  fc_padding: int | str = "VALID"
  pool_indices: bool = False
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
    x, endpoints = Features(
      self.channels,
      self.batch_norm,
      self.width,
      self.first_padding,
      self.pool_indices,
      self.dtype,
      name="features",
    )(x, train=train)
    if self.fc_features:
      for name, k, padding in (("fc6", 7, self.fc_padding), ("fc7", 1, "VALID")):
        x = layers.Conv(
          self.fc_features, k, padding=padding, use_bias=True, dtype=self.dtype, name=name
        )(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
      endpoints["fc7"] = x
    return x, endpoints


def width_from_divisor(divisor: int) -> int:
  """`VGG.width` of VGG16 with every channel count divided by `divisor`."""
  if divisor < 1 or 64 % divisor:
    raise errors.InvalidInput(
      f"config.model.width_divisor={divisor} must divide VGG16's 64 first channels"
    )
  return 64 // divisor


VGG16 = functools.partial(VGG, batch_norm=False)
VGG16BN = functools.partial(VGG, batch_norm=True)

ENDPOINTS = (
  *(f"pool{i}" for i in range(1, 6)),
  "stride4",
  "stride8",
  "stride16",
  "stride32",
  "fc7",
  *(f"pool{i}_indices" for i in range(1, 6)),
  *(f"pool{i}_size" for i in range(1, 6)),
)

# Weight files (`models.pretrained`): torchvision's `features.N` are jaxseg's
# `features/N`; the fully connected `classifier.0`/`classifier.3` (timm:
# `pre_logits.fc1`/`fc2`) become the convolutions fc6 (7×7) and fc7 (1×1).
_FULLY_CONNECTED = {
  "classifier.0": "fc6",
  "classifier.3": "fc7",
  "pre_logits.fc1": "fc6",
  "pre_logits.fc2": "fc7",
}
# The ImageNet classifier: torchvision's `classifier.6`, timm's `head.fc`.
IMAGENET_CLASSIFIER = re.compile(r"^(classifier\.6|head\.fc)\.")


def detect_weights(keys: set[str]) -> str | None:
  """ "vgg16" or "vgg16_bn" for a torchvision/timm VGG state dict, else None."""
  if "features.0.weight" not in keys:
    return None
  return "vgg16_bn" if "features.1.running_mean" in keys else "vgg16"


def import_tensor(module: str, leaf: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """fc6/fc7 as convolutions; None for every tensor the generic renaming handles."""
  if module not in _FULLY_CONNECTED:
    return None
  name = _FULLY_CONNECTED[module]
  if leaf != "weight":
    return f"params/{name}/{leaf}", value
  if value.ndim == 4:  # timm's ConvMlp already stores a convolution.
    return f"params/{name}/kernel", value.transpose(2, 3, 1, 0)
  if name == "fc6":  # torchvision flattens pool5's [512, 7, 7] channel-major.
    return f"params/{name}/kernel", value.reshape(value.shape[0], -1, 7, 7).transpose(2, 3, 1, 0)
  return f"params/{name}/kernel", value.T[None, None]
