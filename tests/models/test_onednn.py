"""The oneDNN convolution equals XLA's: forward, both gradients, whole models,
training; it is built where it can be, and never reaches an export."""

import functools
import itertools
import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxseg import config_files
from jaxseg.models import create_model, onednn
from jaxseg.training import loop
from tests.helpers import logged_losses, tiny_config

needs_onednn = pytest.mark.skipif(not onednn.available(), reason="oneDNN library not built")


@pytest.fixture(autouse=True)
def _restore_backend():
  """Tests switch the process-wide backend (create_model sets it); put the
  default back even when one fails."""
  yield
  onednn.set_backend("auto")


# The worst relative error seen per dtype, printed at the end of the grid (-s).
WORST: dict[str, float] = {}


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def test_library_is_built_where_the_wheels_exist():
  """`pip install -r requirements.txt` builds it on Linux x86-64; a silent
  build failure there would quietly put every convolution back on XLA."""
  if platform.system() != "Linux" or platform.machine() != "x86_64":
    pytest.skip("oneDNN's CPU wheels are Linux x86-64 only")
  if os.environ.get("JAXSEG_ONEDNN_BUILD") == "0":
    pytest.skip("built with JAXSEG_ONEDNN_BUILD=0")
  onednn.set_backend("auto")  # Whatever a test before this one in the process left.
  assert onednn.available(), onednn.describe()
  assert onednn.describe().startswith("convolutions: oneDNN 3.")


def _grid():
  """Every kernel size × dilation (dilation only for k > 1), with stride,
  groups, batch, size parity and padding kind cycled through them, in both
  dtypes."""
  cases = []
  pairs = [(1, 1), *itertools.product([3, 5, 7], [1, 2, 6, 12, 24, 36])]
  for i, (k, d) in enumerate(pairs):
    cases.append(
      {
        "k": k,
        "dilation": d,
        "stride": (1, 2)[i % 2],
        "groups": ("one", "depthwise")[(i // 2) % 2],
        "batch": (1, 5)[(i // 4) % 2],
        "size": ((13, 11), (12, 16))[(i // 3) % 2],
        "padding": ("SAME", "VALID", "explicit")[i % 3],
      }
    )
  # Rates whose off-centre taps read mostly or only padding (ASPP on small
  # maps): the kernel gradient goes tap by tap.
  base = {"stride": 1, "groups": "one", "batch": 2, "size": (32, 30)}
  cases += [
    {"k": 3, "dilation": 24, **base, "padding": "SAME"},
    {"k": 3, "dilation": 40, **base, "padding": "explicit"},
  ]
  return [dict(c, dtype=dt) for c in cases for dt in ("float32", "bfloat16")]


@needs_onednn
@pytest.mark.parametrize("case", _grid(), ids=lambda c: "-".join(str(v) for v in c.values()))
def test_convolution_and_gradients_equal_xla(case):
  k, d, s = case["k"], case["dilation"], case["stride"]
  extent = d * (k - 1) + 1
  h, w = case["size"]
  if case["padding"] == "VALID":
    h, w = h + extent - 1, w + extent - 1  # At least a few output pixels.
    padding = ((0, 0), (0, 0))
  elif case["padding"] == "SAME":
    padding = jax.lax.padtype_to_pads((h, w), (extent,) * 2, (s, s), "SAME")
    padding = tuple(tuple(p) for p in padding)
  else:
    padding = ((extent // 2 + 1, extent // 2), (1, extent - 1))  # Asymmetric.
  channels = 6
  groups = channels if case["groups"] == "depthwise" else 1
  out = channels if groups > 1 else 10
  dtype = jnp.dtype(case["dtype"])
  keys = jax.random.split(jax.random.key(k * 100 + d), 3)
  x = jax.random.normal(keys[0], (case["batch"], h, w, channels)).astype(dtype)
  kernel = (jax.random.normal(keys[1], (k, k, channels // groups, out)) / k).astype(dtype)

  def xla(x, kernel):  # In float32 on the (rounded) operands: the reference.
    return jax.lax.conv_general_dilated(
      x.astype(jnp.float32),
      kernel.astype(jnp.float32),
      (s, s),
      padding,
      rhs_dilation=(d, d),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups,
    )

  ours = lambda x, kernel: onednn.conv(x, kernel, (s, s), padding, (d, d), groups)
  probe = jax.random.normal(keys[2], jax.eval_shape(xla, x, kernel).shape)

  @functools.partial(jax.jit, static_argnums=0)
  def output_and_grads(f, x, kernel):  # One compile per implementation.
    y, vjp = jax.vjp(f, x, kernel)
    return y, vjp(probe.astype(y.dtype))

  y, grads = output_and_grads(ours, x, kernel)
  expected, expected_grads = output_and_grads(xla, x, kernel)
  assert y.shape == expected.shape and y.dtype == dtype
  tolerance = 1e-5 if dtype == jnp.float32 else 1e-2  # bfloat16: its rounding only.
  pairs = zip(("dx", "dkernel"), grads, expected_grads, strict=True)
  for name, a, b in [("output", y, expected), *pairs]:
    assert a.dtype == dtype
    error = _rel(a, b)
    WORST[dtype.name] = max(WORST.get(dtype.name, 0.0), error)
    assert error < tolerance, (name, error)


def teardown_module():
  if WORST:
    print(f"\noneDNN vs XLA, worst relative error per dtype: {WORST}")


@pytest.mark.slow
@needs_onednn
@pytest.mark.parametrize("config_file", ["configs/deeplabv3plus.py", "configs/unet.py"])
def test_whole_model_gradients_equal_xla(config_file):
  """Every conv the networks use (strided, dilated, depthwise, 1×1, the
  up-convolution), under `grad` of the whole model."""
  config = config_files.load_config(config_file)
  images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  grads = {}
  for backend in ("xla", "onednn"):
    config.conv_backend = backend
    model = create_model(config, 5)
    variables = jax.jit(lambda x, m=model: m.init(jax.random.key(1), x, train=False))(images)

    def loss(params, m=model, v=variables):
      # BatchNorm from running statistics: batch statistics of the image-pool
      # branch (two 1×1 maps) would amplify rounding noise past any tolerance.
      logits = m.apply({**v, "params": params}, images, train=False)["logits"]
      return jnp.mean(jnp.sin(logits))

    text = jax.jit(jax.grad(loss)).lower(variables["params"]).as_text()
    assert ("jaxseg_onednn" in text) == (backend == "onednn")
    grads[backend] = jax.jit(jax.grad(loss))(variables["params"])
  # Against the largest gradient: some (a bias before BatchNorm) are ~0 by
  # construction and hold only rounding noise.
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads["xla"]))
  flat = jax.tree_util.tree_leaves_with_path(grads["onednn"])
  for (path, a), b in zip(flat, jax.tree.leaves(grads["xla"]), strict=True):
    assert float(jnp.max(jnp.abs(a - b))) < 1e-4 * scale, jax.tree_util.keystr(path)


@pytest.mark.slow
@needs_onednn
def test_twenty_training_steps_match_xla(data_dir, tmp_path):
  losses = {}
  for backend in ("xla", "onednn"):
    config = tiny_config(
      data_dir, conv_backend=backend, num_train_steps=20, eval_every_steps=20,
      checkpoint_every_steps=100, learning_rate=0.01,
    )  # fmt: skip
    workdir = str(tmp_path / backend)
    loop.train_and_evaluate(config, workdir)
    losses[backend] = list(logged_losses(workdir).values())
  assert len(losses["onednn"]) == 20
  np.testing.assert_allclose(losses["onednn"], losses["xla"], rtol=1e-3)


@needs_onednn
def test_export_never_embeds_the_custom_call():
  config = config_files.load_config("configs/unet.py")
  model = create_model(config, 5)  # conv_backend "auto": oneDNN while training.
  images = jnp.zeros((1, 32, 32, 3))
  variables = model.init(jax.random.key(0), images, train=False)
  forward = jax.jit(lambda x: model.apply(variables, x, train=False))
  assert "jaxseg_onednn" in forward.lower(images).as_text()
  with onednn.backend("xla"):
    exported = jax.export.export(jax.jit(lambda x: model.apply(variables, x, train=False)))(images)
  assert "jaxseg_onednn" not in exported.mlir_module()
  assert onednn.applies(jnp.float32)  # The previous backend is back.


def test_bad_backend_names_the_config_key():
  config = default.get_config()
  config.conv_backend = "mkl"
  with pytest.raises(ValueError, match=r"config\.conv_backend"):
    create_model(config, 5)
  assert set(onednn.BACKENDS) == {"auto", "onednn", "xla"}


def test_xla_backend_switches_it_off():
  with onednn.backend("xla"):
    assert not onednn.applies(jnp.float32)
    assert "conv_backend='xla'" in onednn.describe()


@pytest.mark.slow
def test_without_the_library_models_run_on_xla_and_say_so(tmp_path):
  script = (
    "import jax, jax.numpy as jnp\n"
    "from configs import default\n"
    "from jaxseg.models import create_model, onednn\n"
    "model = create_model(default.get_config(), 5)\n"
    "x = jnp.zeros((1, 32, 32, 3))\n"
    "variables = model.init(jax.random.key(0), x, train=False)\n"
    "text = jax.jit(lambda x: model.apply(variables, x, train=False)).lower(x).as_text()\n"
    "assert 'jaxseg_onednn' not in text and 'convolution' in text\n"
    "print(onednn.describe())\n"
  )
  env = {**os.environ, "JAXSEG_ONEDNN_LIBRARY": str(tmp_path / "missing.so")}
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith("convolutions: XLA; the jaxseg-onednn library does not load")


@needs_onednn
def test_auto_keeps_xla_on_several_cpu_devices():
  script = (
    "import jax.numpy as jnp\n"
    "from jaxseg.models import onednn\n"
    "assert not onednn.applies(jnp.float32), onednn.describe()\n"
    "print(onednn.describe())\n"
    "onednn.set_backend('onednn')\n"
    "assert onednn.applies(jnp.float32)\n"
  )
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
  env = {**os.environ, "XLA_FLAGS": flags}
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith("convolutions: XLA (8 CPU devices in this process")
