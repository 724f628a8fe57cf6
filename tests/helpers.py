"""Helpers shared by tests: tiny configs, the losses a run logged, weight files,
dataset directories in the real on-disk formats, parameter counting."""

import contextlib
import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import traceback
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file
from scipy import io as scipy_io

from configs import default
from jaxseg.data import labels, pipeline
from jaxseg.models import pretrained
from jaxseg.parallel import sharding
from jaxseg.scoring import writers
from jaxseg.training import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def tiny_config(data_dir: str, **overrides):
  """The default experiment shrunk to seconds: tiny data, tiny PSPNet;
  `overrides` by dotted key (`**{"model.aux_channels": 4}`)."""
  config = default.get_config()
  config.data.variant = "tiny"
  config.data.data_dir = data_dir
  config.model.backbone_width = 8
  config.model.head_channels = 16
  config.model.aux_channels = 8
  config.crop_size = (64, 64)
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 4
  config.warmup_steps = 1
  config.log_every_steps = 1
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 2
  config.update_from_flattened_dict(overrides)
  return config


def tiny_flags(data_dir: str, **overrides) -> list[str]:
  """`--config.KEY=VALUE` flags of `tiny_config(data_dir, **overrides)` for
  a `jaxseg.main` command line."""
  values = {
    "data.variant": "tiny", "data.data_dir": data_dir, "model.backbone_width": 8,
    "model.head_channels": 16, "model.aux_channels": 8, "crop_size": "(64,64)",
    "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 4, "warmup_steps": 1,
    "log_every_steps": 1, "eval_every_steps": 4, "checkpoint_every_steps": 2, **overrides,
  }  # fmt: skip
  return ["--config=configs/default.py", *(f"--config.{k}={v}" for k, v in values.items())]


def logged_losses(workdir: str) -> dict[int, float]:
  """Per-step training loss a run logged (the latest record of a step logged twice)."""
  return {r["step"]: r["train/loss"] for r in writers.read_scalars(workdir) if "train/loss" in r}


def saved_params(workdir: str) -> dict:
  return pretrained.flatten_dict(checkpoint.read_variables(workdir)[0]["params"])


def one_step_at_learning_rate_zero(data_dir: str, **overrides):
  """A tiny run whose saved parameters are its initial ones."""
  return tiny_config(
    data_dir,
    num_train_steps=1,
    learning_rate=0.0,
    end_learning_rate=0.0,
    eval_every_steps=1,
    checkpoint_every_steps=1,
    **overrides,
  )


def torchvision_resnet_state(stage_sizes, bottleneck: bool, width: int, seed: int = 0) -> dict:
  """A random state dict with torchvision's ResNet names and shapes (`width`
  channels in the first stage instead of 64), ImageNet classifier included."""
  rng = np.random.default_rng(seed)
  state = {}

  def conv(name, cout, cin, k):
    state[f"{name}.weight"] = rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k))

  def bn(name, c):
    state[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
    state[f"{name}.bias"] = rng.uniform(-0.5, 0.5, c)
    state[f"{name}.running_mean"] = rng.uniform(-0.5, 0.5, c)
    state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c)
    state[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1", width, 3, 7)
  bn("bn1", width)
  cin, expansion = width, 4 if bottleneck else 1
  for i, blocks in enumerate(stage_sizes):
    planes = width * 2**i
    for j in range(blocks):
      p = f"layer{i + 1}.{j}"
      if bottleneck:
        shapes = [(planes, cin, 1), (planes, planes, 3), (planes * 4, planes, 1)]
      else:
        shapes = [(planes, cin, 3), (planes, planes, 3)]
      for n, (co, ci, k) in enumerate(shapes, 1):
        conv(f"{p}.conv{n}", co, ci, k)
        bn(f"{p}.bn{n}", co)
      if j == 0 and (i > 0 or cin != planes * expansion):
        conv(f"{p}.downsample.0", planes * expansion, cin, 1)
        bn(f"{p}.downsample.1", planes * expansion)
      cin = planes * expansion
  state["fc.weight"] = rng.normal(size=(10, cin))
  state["fc.bias"] = np.zeros(10)
  return {k: v if v.dtype == np.int64 else v.astype(np.float32) for k, v in state.items()}


def save_safetensors(state: dict, path) -> str:
  # safetensors writes an array's buffer as it lies: transposed views first made C-ordered.
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
  return str(path)


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  """`python -m module args...` from the repository root, output captured;
  `env` adds environment variables."""
  env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
  )  # fmt: skip


def _one_host(*settings) -> bool:
  assert not any(settings), "a command run in-process cannot join other hosts"
  return False


# Commands whose flags and `main` live in their package's `__main__.py`.
_PACKAGE_COMMANDS = ("jaxseg.export", "jaxseg.benchmark")


def run_command(module: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m module args...` run in this process as its command line runs
  it: its flags defined and parsed (`cli.parse_flags`), a user error as one
  `error:` line and status 2 (`cli.run`'s handling), a bad flag as absl's
  status 1, stdout and stderr captured. Cheaper than `run_module` by a fresh
  interpreter; use that where a fresh process is the point."""
  from absl import app, flags

  from jaxseg import cli
  from jaxseg.parallel import distributed

  command = importlib.import_module(module + ".__main__" if module in _PACKAGE_COMMANDS else module)
  defined = set(flags.FLAGS)
  command.define_flags()
  stdout, stderr, status = io.StringIO(), io.StringIO(), 0
  # This process runs JAX already and is one host: `jaxseg.main` joins none
  # (joining is tested in fresh processes: tests/parallel/test_distributed.py).
  join = mock.patch.object(distributed, "initialize", _one_host)
  try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), join:
      try:
        cli.report_user_errors(command.main, cli.parse_flags([module, *args]))
      except SystemExit as e:
        status = e.code if isinstance(e.code, int) else int(e.code is not None)
      except (flags.Error, app.UsageError) as e:  # What absl's app.run reports, status 1.
        print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
        status = 1
      except Exception:  # A bug: its traceback, as the command line would print it.
        traceback.print_exc()
        status = 1
  finally:
    for name in set(flags.FLAGS) - defined:
      delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
  return subprocess.CompletedProcess([module, *args], status, stdout.getvalue(), stderr.getvalue())


def tree_size(tree) -> int:
  """Elements in all leaves of `tree` (arrays or shapes)."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def param_count(model, size=(64, 64)) -> int:
  """Parameters of `model` (shapes only: nothing is compiled)."""
  variables = jax.eval_shape(lambda: model.init(RNGS, jnp.zeros((1, *size, 3)), train=True))
  return tree_size(variables["params"])


def conv_bn_params(c_in: int, c_out: int, k: int = 3) -> int:
  """A k×k convolution without bias and its BatchNorm."""
  return k * k * c_in * c_out + 2 * c_out


def score_params(c_in: int, c: int) -> int:
  """A 1×1 classifier with bias."""
  return c_in * c + c


# Image sizes of the small datasets tests write.
SIZES = [(20, 24), (17, 30), (26, 18), (21, 21), (19, 27), (24, 16)]


def random_image(rng, h, w):
  """A random uint8 RGB image."""
  return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_palette_png(path, indices, palette):
  """Class indices as a palette PNG, as VOC stores its labels."""
  im = Image.fromarray(indices.astype(np.uint8), mode="P")
  flat = np.zeros((256, 3), np.uint8)
  flat[: len(palette)] = palette
  im.putpalette(flat.ravel().tolist())
  im.save(path)


def write_voc_devkit(root, rng):
  """A VOCdevkit with 6 images (4 train, 2 val) and an SBD release with 3 more."""
  voc = os.path.join(root, "VOCdevkit", "VOC2012")
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    os.makedirs(os.path.join(voc, sub))
  written = {}
  ids = [f"2007_{i:06d}" for i in range(len(SIZES))] + [f"2008_{i:06d}" for i in range(3)]
  for image_id, (h, w) in zip(ids, [*SIZES, (15, 22), (23, 19), (18, 18)], strict=True):
    Image.fromarray(random_image(rng, h, w)).save(
      os.path.join(voc, "JPEGImages", f"{image_id}.jpg")
    )
    label = rng.integers(0, 21, size=(h, w))
    label[0, :] = 255  # The void border.
    written[image_id] = label
    if image_id.startswith("2007"):
      png = os.path.join(voc, "SegmentationClass", f"{image_id}.png")
      write_palette_png(png, label, labels.VOC_PALETTE)
  lists = os.path.join(voc, "ImageSets", "Segmentation")
  with open(os.path.join(lists, "train.txt"), "w") as f:
    f.write("\n".join(ids[:4]) + "\n")
  with open(os.path.join(lists, "val.txt"), "w") as f:
    f.write("\n".join(ids[4:6]) + "\n")
  sbd = os.path.join(root, "benchmark_RELEASE", "dataset")
  os.makedirs(os.path.join(sbd, "cls"))
  for image_id in [*ids[6:], ids[4]]:  # One SBD image is in VOC val: excluded.
    sbd_label = np.where(written[image_id] == 255, 0, written[image_id]).astype(np.uint8)
    if image_id.startswith("2008"):
      written[image_id] = sbd_label
    gt = {"Segmentation": sbd_label, "Boundaries": np.zeros(1), "CategoriesPresent": np.ones(1)}
    scipy_io.savemat(os.path.join(sbd, "cls", f"{image_id}.mat"), {"GTcls": gt})
  with open(os.path.join(sbd, "train.txt"), "w") as f:
    f.write("\n".join(ids[6:8]) + "\n")
  with open(os.path.join(sbd, "val.txt"), "w") as f:
    f.write("\n".join([ids[8], ids[4], ids[0]]) + "\n")
  return ids, written


def dataset_config(data_dir, name, **data):
  """`tiny_config` reading dataset `name` (with `config.data` fields `data`), batches of 2."""
  config = tiny_config(data_dir)
  config.data.name = name
  config.data.variant = ""
  config.batch_size = 2
  config.eval_batch_size = 2
  for key, value in data.items():
    setattr(config.data, key, value)
  return config


def eval_labels_by_name(config):
  """Every validation label, cropped back from its padding, by file name."""
  spec, builder = pipeline.prepare(config)
  mesh = sharding.make_mesh(config)
  plan = pipeline.eval_plan(config, spec, builder, mesh)
  order = [i for _, indices in plan.batches for i in indices]
  out = {}
  batches = pipeline.eval_batches(config, spec, builder, plan)
  labels = [
    (label, size, keep)
    for batch in batches
    for label, size, keep in zip(batch["label"], batch["size"], batch["mask"], strict=True)
  ]
  for index, (label, (h, w), keep) in zip(order, labels, strict=True):
    assert keep == (index >= 0)
    if keep:
      assert np.all(label[h:] == 255) and np.all(label[:, w:] == 255)
      out[index] = label[:h, :w]
  source = builder.as_data_source(config.data.eval_split or spec.eval_split)
  assert sorted(out) == list(range(len(source)))
  return spec, builder, {source[i]["file_name"].decode(): out[i] for i in out}


def write_folder(root, rng, meta, masks, rgb=False, sizes=SIZES):
  """A `folder` dataset: images, masks (indices, or colours with `rgb`), classes.json."""
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  (root / "classes.json").write_text(json.dumps(meta))
  for i, ((h, w), mask) in enumerate(zip(sizes, masks, strict=True)):
    ext = "jpg" if i % 2 else "png"
    Image.fromarray(random_image(rng, h, w)).save(root / "images" / f"im{i}.{ext}")
    if rgb:
      Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    else:
      Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"im{i}.png")


needs_torch = pytest.mark.skipif(
  importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
  reason="parity needs torch, torchvision and timm: pip install -r requirements-convert.txt",
)


def torch_reference(
  tmp_path, model: str, output_stride: int = 32, size: int = 96, image: str | None = None
):
  """Runs tests/torch_parity.py (in its own process: torchvision crashes in
  one that has loaded TensorFlow); returns the weights file and the expected
  endpoints (and `labels` on the RGB file `image`)."""
  done = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "tests", "torch_parity.py"),
      f"--model={model}",
      f"--output_stride={output_stride}",
      f"--size={size}",
      f"--out={tmp_path}",
      *([f"--image={image}"] if image else []),
    ],
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stderr
  weights = [f for f in os.listdir(tmp_path) if f.startswith("weights.")]
  return str(tmp_path / weights[0]), dict(np.load(tmp_path / "expected.npz"))


def tiny_folder_config(data_dir: str, folder, **overrides):
  """A 4-feature U-Net on the `folder` dataset in `folder`: 32² crops,
  batches of 2, 2 steps and an evaluation; `overrides` by dotted key."""
  config = default.get_config()
  config.data.name = "folder"
  config.data.variant = ""
  config.data.folder = str(folder)
  config.data.data_dir = data_dir
  config.model = ml_collections.ConfigDict({"name": "unet", "features": 4})
  config.crop_size = (32, 32)
  config.batch_size = config.eval_batch_size = 2
  config.num_train_steps = config.eval_every_steps = 2
  config.warmup_steps = 0
  config.num_pictures = 2
  config.update_from_flattened_dict(overrides)
  return config
