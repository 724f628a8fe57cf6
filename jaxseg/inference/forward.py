"""The one forward pass of a trained model, and the labels it decides.

`forward_logits` (uint8/uint16 images in, float32 logits out, preprocessing
included) is how a trained model runs everywhere: evaluation during training
and its pictures, `jaxseg.evaluate`/`predict`, exports and the benchmark.
`make_predict_fn` jits it into a `PredictFn`, a function of a batch
`[N, h, w, bands]` returning float32 logits `[N, h, w, C]` (compiled once per
input shape), the form the full-resolution modes (`inference.modes`) take;
`make_label_fn` also decides the labels on the device (video frames).
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import errors
from jaxseg.data import preprocessing
from jaxseg.models import onednn

PredictFn = Callable[[np.ndarray], np.ndarray]


def forward_logits(
  model, variables, images: jax.Array, norm: preprocessing.Normalization = preprocessing.IMAGENET
) -> jax.Array:
  """The model's float32 logits `[N, h, w, C]` for a batch `[N, h, w, bands]`
  standardised by `norm` (the run's: `preprocessing.from_config`).

  The one forward pass of a trained model: evaluation during training, its
  pictures, `jaxseg.evaluate`/`predict`, exports and the benchmark all run it.
  A bfloat16 network computes in float32 where that is the faster on this
  CPU (`onednn.inference_dtype`).
  """
  dtype = getattr(model, "dtype", None)
  if dtype is not None and (computed := onednn.inference_dtype(dtype)) != dtype:
    model = model.clone(dtype=computed)
  out = model.apply(variables, preprocessing.normalize(images, norm), train=False)["logits"]
  return out.astype(jnp.float32)


def decision(config, class_names: Sequence[str]) -> tuple[int | None, float]:
  """`(foreground, threshold)` for `decide` from a run's config: the index of
  the class `config.binary.foreground` names, None for a multiclass run.

  Raises:
    ValueError naming the key if the dataset does not have exactly two
    classes, one of them that name, or the threshold is not in (0, 1).
  """
  binary = config.get("binary") or {}  # Runs from before binary mode have none.
  name, threshold = binary.get("foreground", ""), binary.get("threshold", 0.5)
  if not name:
    return None, 0.5
  if len(class_names) != 2 or name not in class_names:
    raise errors.InvalidInput(
      f"config.binary.foreground={name!r}: binary mode needs a two-class dataset with that "
      f"class; this one has {list(class_names)}"
    )
  if not 0 < threshold < 1:
    raise errors.InvalidInput(f"config.binary.threshold={threshold!r} must be between 0 and 1")
  return list(class_names).index(name), float(threshold)


def decide(probs, foreground: int | None = None, threshold: float = 0.5):
  """Class labels from probabilities `[..., C]` (numpy or jax): the argmax, or
  in a binary run the foreground where its probability is >= `threshold`."""
  if foreground is None:
    return probs.argmax(-1)
  xp = jnp if isinstance(probs, jax.Array) else np
  return xp.where(probs[..., foreground] >= threshold, foreground, 1 - foreground)


def decide_logits(logits: jax.Array, foreground: int | None = None, threshold: float = 0.5):
  """`decide` on logits `[..., C]` (jax on the device, numpy on the host):
  the argmax, or in a binary run the foreground where `logit_fg - logit_bg
  >= log(t / (1 - t))`, which is its softmax probability reaching `t`."""
  xp = jnp if isinstance(logits, jax.Array) else np
  if foreground is None:
    return xp.argmax(logits, -1)
  margin = logits[..., foreground] - logits[..., 1 - foreground]
  return xp.where(margin >= math.log(threshold / (1 - threshold)), foreground, 1 - foreground)


def make_predict_fn(
  model, variables, norm: preprocessing.Normalization = preprocessing.IMAGENET
) -> PredictFn:
  """A jitted `[N, h, w, bands] -> float32 [N, h, w, C]` logits function.

  The variables go to the device once and into the compiled function as an
  argument, not as constants baked into it.
  """
  variables = jax.device_put(variables)
  run = jax.jit(lambda variables, images: forward_logits(model, variables, images, norm))
  return lambda images: np.asarray(run(variables, jnp.asarray(images)))


def make_label_fn(
  model,
  variables,
  size_multiple: int = 32,
  foreground: int | None = None,
  threshold: float = 0.5,
  norm: preprocessing.Normalization = preprocessing.IMAGENET,
) -> Callable[[np.ndarray], np.ndarray]:
  """A jitted `uint8 [N, h, w, 3] -> uint8 [N, h, w]` class-label function
  (video frames): the decision (`decide`) runs on the device, so only labels
  come back. Frames are padded up to a multiple of `size_multiple`, labels
  cropped back."""
  variables = jax.device_put(variables)

  def run(variables, images):
    logits = forward_logits(model, variables, images, norm)
    return decide_logits(logits, foreground, threshold).astype(jnp.uint8)

  run = jax.jit(run)
  m = max(1, size_multiple)

  def labels(images: np.ndarray) -> np.ndarray:
    n, h, w, _ = images.shape
    height, width = -(-h // m) * m, -(-w // m) * m
    if (height, width) != (h, w):
      padded = np.empty((n, height, width, images.shape[-1]), images.dtype)
      padded[...] = norm.pad
      padded[:, :h, :w] = images
      images = padded
    return np.asarray(run(variables, jnp.asarray(images)))[:, :h, :w]

  return labels
