"""What networks expect of their input: ImageNet standardisation, the pad colour."""

import jax.numpy as jnp
import numpy as np

from jaxseg.data import preprocessing


def test_normalize_standardises_with_imagenet_statistics():
  image = jnp.asarray([[[0, 128, 255]]], jnp.uint8)
  expected = (np.array([0, 128, 255]) - np.array(preprocessing.MEAN_RGB)) / np.array(
    preprocessing.STDDEV_RGB
  )
  out = preprocessing.normalize(image)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)


def test_the_pad_colour_standardises_to_about_zero():
  padded = np.asarray(preprocessing.normalize(jnp.asarray(preprocessing.PAD_COLOUR)))
  assert preprocessing.PAD_COLOUR.dtype == np.uint8
  assert np.all(np.abs(padded) < 0.01)
