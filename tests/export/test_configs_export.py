"""Every config's network, at full size, exports for any image size in a form
that every format's converter takes (checked on the traced program: nothing
is compiled)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import config_files
from jaxseg.data import get_dataset_spec, preprocessing
from jaxseg.export import stablehlo
from jaxseg.models import create_model, onednn, transformer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
  f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and f[0] != "_"
)
# Variants that change the network's code path, not only its widths.
VARIANTS = [
  "fcn8s.py:paper",  # The authors' 100-pixel padding and crops.
  "deeplabv3.py:mobilenet_v3_large",
  "deeplabv3plus.py:mobilenet_v2",
  "upernet.py:swin_tiny",  # Shifted windows over padded maps.
  "torchvision.py:fcn_resnet50",
  "torchvision.py:lraspp_mobilenet_v3_large",
]
# What TFLite's converter refuses at symbolic sizes: reads at computed places
# (a gather of a symbolic extent, dynamic slices, scatters), argmax, and pads
# of a symbolic amount.
REFUSED = {"dynamic_slice", "dynamic_update_slice", "argmax", "argmin", "scatter", "scatter-add"}


def _refused(jaxpr) -> list[str]:
  found = []
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    static = lambda shape: all(isinstance(d, (int, np.integer)) for d in shape)
    if name in REFUSED:
      found.append(name)
    elif name == "gather" and not (
      static(eqn.invars[1].aval.shape) and static(eqn.params["slice_sizes"])
    ):
      found.append("gather of a symbolic extent")
    elif name == "pad" and not static([d for p in eqn.params["padding_config"] for d in p]):
      found.append("pad of a symbolic amount")
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          found += _refused(inner)
  return found


@pytest.mark.parametrize("name", [*CONFIGS, *VARIANTS])
def test_config_network_exports_for_any_size(name, tmp_path):
  file, _, arg = name.partition(":")
  if file == "binary.py":  # Its classes come from a folder.
    os.makedirs(tmp_path / "folder")
    (tmp_path / "folder" / "classes.json").write_text('{"classes": ["background", "foreground"]}')
  path = os.path.join(ROOT, "configs", file)
  config = config_files.load_config(f"{path}:{arg}" if arg else path)
  if file == "binary.py":
    config.data.folder = str(tmp_path / "folder")
  norm = preprocessing.from_config(config)
  model = create_model(config, get_dataset_spec(config.data).num_classes)
  image = jnp.zeros((1, 64, 64, norm.channels), norm.dtype)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), image, train=False))

  def serve(variables, images):
    return stablehlo.padded_forward(model, variables, norm)(images)

  b, h, w = jax.export.symbolic_shape("batch, height, width")
  images = jax.ShapeDtypeStruct((b, h, w, norm.channels), norm.dtype)
  # As the exports trace it (jaxseg.export.stablehlo, tf_formats).
  with onednn.backend("xla"), transformer.elementary_erf():
    jaxpr = jax.make_jaxpr(serve)(variables, images)
  assert jaxpr.out_avals[0].shape[:3] == (b, h, w)
  assert not _refused(jaxpr.jaxpr), f"{name}: {sorted(set(_refused(jaxpr.jaxpr)))}"
