"""SegFormer and UPerNet against transformers' networks on the same weights.

Each reference is built with random weights by `tests/hf_parity.py` in its own
process and saved in the Hugging Face Hub's file layout; jaxseg imports that
file (`models.published`) and must give the same logits at 512×512 and at an
odd size, with the same parameter count. Needs torch and transformers
(`pip install -r requirements-convert.txt`).
"""

import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxseg import config_files
from jaxseg.models import create_model, pretrained, published
from tests.helpers import ROOT

needs_transformers = pytest.mark.skipif(
  importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
  reason="parity needs torch and transformers: pip install -r requirements-convert.txt",
)
SIZES = ("512x512", "97x75")
RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def hf_reference(out, model: str, sizes=SIZES, num_labels: int = 150, image=None) -> dict:
  """Runs tests/hf_parity.py; returns its expected.npz."""
  done = subprocess.run(
    [
      sys.executable, os.path.join(ROOT, "tests", "hf_parity.py"), f"--model={model}",
      f"--sizes={','.join(sizes)}", f"--num_labels={num_labels}", f"--out={out}",
      *([f"--image={image}"] if image else []),
    ],
    capture_output=True, text=True,
  )  # fmt: skip
  assert done.returncode == 0, done.stderr[-3000:]
  return dict(np.load(os.path.join(out, "expected.npz")))


@needs_transformers
@pytest.mark.parametrize(
  "reference,config",
  [
    ("segformer_b0", "configs/segformer.py:b0,ade20k"),
    ("segformer_b2", "configs/segformer.py:b2,ade20k"),
    ("upernet_convnext_tiny", "configs/upernet.py:convnext_tiny,ade20k"),
    ("upernet_swin_tiny", "configs/upernet.py:swin_tiny,ade20k"),
  ],
)
def test_logits_and_parameter_count_equal_transformers(tmp_path, reference, config):
  expected = hf_reference(tmp_path, reference)
  flat, _, unused, names = published.load(str(tmp_path))
  assert names and len(names) == 150
  left_out = ("num_batches_tracked", "swin.layernorm.weight", "swin.layernorm.bias")
  assert all(k.endswith(left_out) for k in unused), unused
  model = create_model(config_files.load_config(os.path.join(ROOT, config)), 150)
  target = jax.eval_shape(
    lambda: model.init(RNGS, np.zeros((1, 64, 64, 3), np.float32), train=True)
  )
  pretrained.check_fits(flat, pretrained.flatten_dict(target), reference)
  params = sum(v.size for k, v in flat.items() if k.startswith("params/"))
  # transformers' Swin keeps its classification model's final norm, which no
  # feature map goes through: the one parameter pair jaxseg has no place for.
  tensors, _ = pretrained.read_state_dict(str(tmp_path / "model.safetensors"))
  unused_params = sum(tensors[k].size for k in unused if "layernorm" in k)
  assert params == int(expected["parameters"]) - unused_params
  variables = pretrained.unflatten_dict(
    {k: v for k, v in flat.items() if "/aux_head/" not in f"/{k}"}
  )
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False)["logits"])
  for size in SIZES:
    logits = np.asarray(apply(variables, expected[f"image_{size}"]))
    want = expected[f"logits_{size}"]
    difference = np.max(np.abs(logits - want)) / np.max(np.abs(want))
    print(f"\n{reference} {size}: max relative difference {difference:.2e}")
    assert difference <= 1e-4, size
    assert np.mean(np.argmax(logits, -1) == np.argmax(want, -1)) >= 0.999


@needs_transformers
def test_predict_with_a_published_segformer_fetched_by_name(tmp_path, monkeypatch):
  """A SegFormer-B0 in the Hub's layout, served on 127.0.0.1: `predict
  --config.model.weights=hf:...` labels a photo as transformers does, and
  again from the cache with the server stopped."""
  from PIL import Image

  from tests.helpers import run_command
  from tests.models.test_fetch import Server

  rng = np.random.default_rng(0)
  photo = tmp_path / "in" / "photo.png"
  photo.parent.mkdir()
  smooth = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((16, 16, 1))).astype(np.uint8)
  Image.fromarray(smooth).save(photo)
  snapshot = tmp_path / "snapshot"
  expected = hf_reference(snapshot, "segformer_b0", sizes=("64x64",), num_labels=5, image=photo)
  base = "/test/segformer-b0/resolve/main/"
  server = Server({base + f: (snapshot / f).read_bytes() for f in os.listdir(snapshot)})
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("no_proxy", "127.0.0.1")
  args = [
    f"--config={ROOT}/configs/segformer.py",  # b0 on the 5-class embedded dataset.
    "--config.model.weights=hf:test/segformer-b0",
    f"--input={photo}",
  ]
  for attempt in ("downloaded", "cached"):
    out = tmp_path / attempt
    done = run_command("jaxseg.predict", *args, f"--output={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    labels = np.asarray(Image.open(out / "photo.png"))
    agree = np.mean(labels == expected["labels"])
    print(f"\n{attempt}: {agree:.4%} of pixels equal transformers' argmax")
    assert agree >= 0.999
    if attempt == "downloaded":
      server.stop()
