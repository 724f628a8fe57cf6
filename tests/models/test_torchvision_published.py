"""torchvision's published segmentation networks (`configs/torchvision.py`).

Each reference is built by torchvision with random weights and the auxiliary
head its COCO checkpoints carry, saved as its state dict; jaxseg reads it
through `config.model.weights` and must use every array (training's network,
auxiliary head included, so parameter counts are equal) and give the same
logits. Needs torch and torchvision (`pip install -r requirements-convert.txt`).
"""

import hashlib
import os

import jax
import numpy as np
import pytest

from jaxseg import config_files
from jaxseg.models import create_model, fetch, published
from jaxseg.training import runs
from tests.helpers import ROOT, needs_torch, run_command, torch_reference

CONFIG = os.path.join(ROOT, "configs", "torchvision.py")


def _config(variant: str, weights: str, size: int):
  config = config_files.load_config(f"{CONFIG}:{variant}")
  config.model.weights = weights
  config.crop_size = (size, size)
  return config


@needs_torch
@pytest.mark.parametrize("variant", fetch.TORCHVISION_FILES)
def test_logits_equal_torchvisions_and_every_array_is_used(tmp_path, variant):
  weights, expected = torch_reference(tmp_path, f"segmentation:{variant}", size=97)
  config = _config(variant, weights, 97)
  # Training's network (with the auxiliary head) takes every array: none is
  # left over or missing, so the parameter counts are torchvision's.
  model = create_model(config, 21)
  abstract = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)}, expected["image"], train=True
    )
  )
  _, summary = published.network_values(weights, abstract, class_names=("x",) * 21, fine_tune=False)
  assert "not used" not in summary and "re-initialised" not in summary, summary
  model, variables = runs.load_published(config)  # What predict builds.
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False)["logits"])(
    variables, expected["image"]
  )
  difference = np.max(np.abs(logits - expected["logits"])) / np.max(np.abs(expected["logits"]))
  print(f"\n{variant}: max relative difference {difference:.2e}")
  assert difference <= 1e-4


@needs_torch
def test_predict_with_torchvisions_lraspp_fetched_by_name(tmp_path, monkeypatch):
  """`predict --config=configs/torchvision.py:lraspp_mobilenet_v3_large`
  downloads the weights by name from a server on 127.0.0.1, checks the
  SHA-256 the file name carries, and labels a photo as torchvision does;
  again from the cache with the server stopped."""
  from PIL import Image

  from tests.models.test_fetch import Server

  variant = "lraspp_mobilenet_v3_large"
  rng = np.random.default_rng(0)
  photo = tmp_path / "in" / "photo.png"
  photo.parent.mkdir()
  smooth = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((16, 16, 1))).astype(np.uint8)
  Image.fromarray(smooth).save(photo)
  weights, expected = torch_reference(
    tmp_path / "reference", f"segmentation:{variant}", size=32, image=str(photo)
  )
  body = open(weights, "rb").read()
  file = f"{variant}-{hashlib.sha256(body).hexdigest()[:8]}.pth"
  monkeypatch.setitem(fetch.TORCHVISION_FILES, variant, file)
  server = Server({f"/models/{file}": body})
  monkeypatch.setenv("JAXSEG_TORCHVISION_URL", f"{server.url}/models")
  monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("no_proxy", "127.0.0.1")
  for attempt in ("downloaded", "cached"):
    out = tmp_path / attempt
    done = run_command(
      "jaxseg.predict", f"--config={CONFIG}:{variant}", f"--input={photo}", f"--output={out}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    labels = np.asarray(Image.open(out / "photo.png"))
    agree = np.mean(labels == expected["labels"])
    print(f"\n{attempt}: {agree:.4%} of pixels equal torchvision's argmax")
    assert agree >= 0.999
    if attempt == "downloaded":
      server.stop()
