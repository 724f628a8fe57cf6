"""Photometric distortion: colours only, HSV conversions against colorsys."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.data import photometric


def test_hsv_round_trip_and_reference():
  rgb = np.random.default_rng(0).uniform(0, 255, size=(64, 3)).astype(np.float32)
  hsv = np.asarray(photometric.rgb_to_hsv(jnp.asarray(rgb)))
  ref = np.array([colorsys.rgb_to_hsv(*(c / 255)) for c in rgb])
  np.testing.assert_allclose(hsv[:, :2], ref[:, :2], atol=1e-5)
  np.testing.assert_allclose(hsv[:, 2], ref[:, 2] * 255, rtol=1e-5)
  np.testing.assert_allclose(photometric.hsv_to_rgb(jnp.asarray(hsv)), rgb, atol=1e-3)


def test_distortion_keeps_values_in_range_and_changes_them():
  image = jnp.asarray(np.random.default_rng(1).uniform(0, 255, (16, 16, 3)), jnp.float32)
  changed = []
  for seed in range(4):
    out = np.asarray(photometric.distort(jax.random.key(seed), image))
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 255
    changed.append(not np.allclose(out, image))
  assert any(changed)
