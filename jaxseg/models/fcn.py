"""FCN-32s, FCN-16s and FCN-8s on VGG16.

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, https://arxiv.org/abs/1411.4038.

As in the authors' Caffe release: the first convolution pads by 100 pixels and
pools round up, so the stride-32 score map covers any input; 1×1 score layers
on fc7, pool4 and pool3; transposed-convolution upsampling (kernel 2× its
stride) fixed to bilinear interpolation (`lr_mult: 0` in their nets; the
paper's text lets the 2× ones learn from a bilinear start:
`learned_upsampling=True`); and the crops (offsets 19;
5 and 27; 5, 9 and 31) that align each upsampled map with the next and the
final one with the input, so the output is exactly the input's size.

`input_padding=0` drops the 100-pixel border, which on small crops is most of
the work (a 64×64 crop is a 264×264 input): the image is padded to a multiple
of 32 instead, fc6 keeps the pool5 map's size, and each 2× upsampled map is
cropped by one pixel (half a coarse cell) to align with the next skip.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxseg import errors
from jaxseg.models import backbones, layers, vgg

# Offsets of the crops in the authors' networks (they follow from padding 100,
# five ceil-mode pools and the valid 7×7 fc6).
_FINAL_OFFSET = {32: 19, 16: 27, 8: 31}
_POOL4_OFFSET, _POOL3_OFFSET = 5, 9


def _crop(x: jax.Array, offset: int, size) -> jax.Array:
  return layers.crop(x, size, (offset, offset))


class FCN(nn.Module):
  """FCN at output stride 32, 16 or 8.

  Attributes:
    num_classes: number of classes.
    stride: 32 (FCN-32s), 16 (FCN-16s, adds pool4) or 8 (FCN-8s, adds pool3).
    backbone: "vgg16" (the paper's) or "vgg16_bn" (VGG16-BN: not in the
      paper; it lets FCN train from scratch, which plain VGG16 barely does);
      any registered backbone with `pool3`, `pool4` and `fc7` endpoints.
    width_divisor: divides VGG16's channels (1 in the paper); a divisor of 64.
    fc_features: channels of fc6/fc7 (4096 in the paper).
    dropout_rate: dropout after fc6 and fc7 (0.5).
    learned_upsampling: learn the 2× upsamplings (initialised bilinear), as
      the paper describes; the final one stays bilinear. False (the authors'
      released nets): every upsampling is a fixed bilinear interpolation.
    input_padding: 100 pads the input of the first convolution by 100 pixels
      as the authors' networks do (fc6 valid, the crops above); 0 instead pads
      the image to a multiple of 32 and keeps every map's size through fc6
      (padding 3), so the score maps align by their strides alone and small
      inputs do not pay for a mostly empty 200-pixel border.
    skip_scales: `(pool4, pool3)` factors on the skips' inputs; the paper's
      "at-once" FCN-8s uses (0.01, 0.0001) so that the finer scores start
      small and learn slowly; () scales nothing.
    dtype: computation dtype; logits are float32.

  Returns `{"logits": [N, H, W, num_classes]}`.
  """

  num_classes: int
  stride: int = 8
  backbone: str = "vgg16"
  width_divisor: int = 1
  fc_features: int = 4096
  dropout_rate: float = 0.5
  learned_upsampling: bool = False
  input_padding: int = 100
  skip_scales: tuple[float, ...] = ()
  dtype: layers.Dtype = jnp.float32

  def endpoints_read(self) -> tuple[str, ...]:
    """The backbone endpoints this network reads."""
    return {32: ("fc7",), 16: ("fc7", "pool4"), 8: ("fc7", "pool4", "pool3")}.get(self.stride, ())

  def _check(self) -> None:
    if self.stride not in _FINAL_OFFSET:
      raise errors.InvalidInput(f"FCN stride must be 32, 16 or 8, got {self.stride}")
    if self.skip_scales and len(self.skip_scales) != 2:
      raise errors.InvalidInput(
        "FCN skip_scales (config.model.skip_scales) must be (pool4, pool3) or (), got "
        f"{tuple(self.skip_scales)}"
      )
    if self.input_padding not in (0, 100):
      raise errors.InvalidInput(
        "FCN input_padding (config.model.input_padding) must be 100 (the paper's) or 0, "
        f"got {self.input_padding}"
      )

  @nn.compact
  def __call__(self, image: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    self._check()
    caffe = self.input_padding == 100
    size = image.shape[1:3]
    if not caffe:
      image = layers.pad_to_multiple(image, 32)
    c = self.num_classes
    _, endpoints = backbones.create(
      self.backbone,
      width=vgg.width_from_divisor(self.width_divisor),
      fc_features=self.fc_features,
      dropout_rate=self.dropout_rate,
      first_padding=100 if caffe else 1,
      fc_padding="VALID" if caffe else 3,
      dtype=self.dtype,
    )(image, train=train)

    def score(name, x, init=layers.classifier_init):
      return layers.Conv(c, 1, use_bias=True, dtype=self.dtype, kernel_init=init, name=name)(x)

    def upsample(name, x, factor, learned=False):
      return layers.ConvTranspose(
        c,
        2 * factor,
        factor,
        dtype=self.dtype,
        kernel_init=layers.bilinear_upsampling_init,
        learned=learned,
        name=name,
      )(x)

    def add_skip(x, name, endpoint, offset):
      # Zero-initialised skips: the finer net starts as the coarser one.
      features = endpoints[endpoint]
      if self.skip_scales:
        features = features * self.skip_scales[("pool4", "pool3").index(endpoint)]
      skip = score(name, features, nn.initializers.zeros)
      if caffe:
        return x + _crop(skip, offset, x.shape[1:3])
      # A 2x upsampling's kernel centre lies half a coarse pixel past the
      # aligned position: crop one pixel.
      return _crop(x, 1, skip.shape[1:3]) + skip

    x = score("score_fr", endpoints["fc7"])
    if self.stride <= 16:
      x = add_skip(
        upsample("upscore2", x, 2, self.learned_upsampling), "score_pool4", "pool4", _POOL4_OFFSET
      )
    if self.stride == 8:
      x = add_skip(
        upsample("upscore_pool4", x, 2, self.learned_upsampling),
        "score_pool3",
        "pool3",
        _POOL3_OFFSET,
      )
    x = upsample(f"upscore{self.stride}", x, self.stride)
    offset = _FINAL_OFFSET[self.stride] if caffe else self.stride // 2
    return {"logits": _crop(x, offset, size).astype(jnp.float32)}


# A tiny variant for tests.
_tiny = functools.partial(FCN, width_divisor=16, fc_features=16)
