"""Every config file loads, and every name in it resolves."""

import glob
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import pytest
from flax import traverse_util

from jaxseg import config_checks, config_files
from jaxseg.data import get_dataset_spec
from jaxseg.models import create_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Experiments; files starting with "_" hold what several of them share.
CONFIG_FILES = sorted(
  p
  for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
  if not os.path.basename(p).startswith("_")
)
# Hashes of each config's parameter names and shapes (`param_tree_hash`).
with open(os.path.join(ROOT, "tests", "param_trees.json")) as f:
  PARAM_TREES = json.load(f)
# Arguments each config documents; every one must load.
DATASET_ARGS = ["voc2012", "cityscapes", "ade20k", "oxford_iiit_pet", "folder"]
RESNET_ARGS = ["", "resnet50", "resnet101", *DATASET_ARGS, "resnet101,voc2012"]
PAPER_ARGS = ["", "paper", *DATASET_ARGS, "paper,folder"]
CONFIG_ARGS = {
  "default.py": [""],
  "psp.py": RESNET_ARGS,
  "deeplabv3.py": [*RESNET_ARGS, "mobilenet_v3_large", "mobilenet_v3_large,cityscapes"],
  "deeplabv3plus.py": [*RESNET_ARGS, "mobilenet_v2", "mobilenet_v2,cityscapes"],
  "fcn32s.py": PAPER_ARGS,
  "fcn16s.py": PAPER_ARGS,
  "fcn8s.py": PAPER_ARGS,
  "segnet.py": PAPER_ARGS,
  "unet.py": PAPER_ARGS,
  "lraspp.py": ["", "mobilenet_v3_large", *DATASET_ARGS],
  "fastscnn.py": ["", "paper", *DATASET_ARGS],
  "binary.py": ["", "paper", "shapes"],
  "segformer.py": ["", "b1", "b2", "b3", "b4", "b5", *DATASET_ARGS, "b2,cityscapes"],
  "upernet.py": [
    "",
    "convnext_small",
    "convnext_base",
    "swin_tiny",
    "swin_small",
    "swin_base",
    *DATASET_ARGS,
    "swin_tiny,ade20k",
  ],
  "torchvision.py": [
    "",
    "deeplabv3_resnet101",
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "deeplabv3_resnet50,cityscapes",
  ],
}


def test_every_config_file_is_listed_with_its_arguments():
  assert sorted(os.path.basename(p) for p in CONFIG_FILES) == sorted(CONFIG_ARGS)


def _load(path: str, arg: str):
  return config_files.load_config(f"{path}:{arg}" if arg else path)


@pytest.mark.parametrize(
  "path,arg",
  [(p, a) for p in CONFIG_FILES for a in CONFIG_ARGS[os.path.basename(p)]],
)
def test_config_loads_and_names_resolve(path, arg):
  config = _load(path, arg)
  config_checks.check_numbers(config)
  # A folder's classes come from the folder; any number does here.
  num_classes = 3 if config.data.name == "folder" else get_dataset_spec(config.data).num_classes
  model = create_model(config, num_classes)
  # Shapes only: no compilation of full-size models.
  x = jnp.zeros((1, *config.crop_size, 3))
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(lambda: model.init(rngs, x, train=True))
  assert variables["params"]
  assert config.batch_size > 0 and config.num_train_steps > 0
  # The parameter tree (names and shapes) is pinned: checkpoints and converted
  # weight files of every config keep loading whatever the code's structure.
  name = os.path.basename(path) + (f":{arg}" if arg else "")
  assert param_tree_hash(variables) == PARAM_TREES[name], f"{name}: parameter tree changed"


def param_tree_hash(variables) -> str:
  flat = traverse_util.flatten_dict(dict(variables), sep="/")
  lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(flat.items()))
  return hashlib.sha256(lines.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
  "path", [p for p in CONFIG_FILES if CONFIG_ARGS[os.path.basename(p)] != [""]]
)
def test_config_rejects_an_unknown_argument(path):
  with pytest.raises(ValueError, match="takes"):
    _load(path, "not-an-argument")


@pytest.mark.parametrize("name", ["fcn32s.py", "fcn8s.py", "segnet.py"])
def test_real_dataset_recipes_keep_the_papers_sgd(name):
  # The embedded-data defaults of the VGG networks train with AdamW; a real
  # dataset's recipe is mmsegmentation's SGD whatever the model's default.
  path = os.path.join(ROOT, "configs", name)
  assert _load(path, "").optimizer == "adamw"
  for arg in DATASET_ARGS:
    config = _load(path, arg)
    assert (config.optimizer, config.learning_rate) == ("sgd", 0.01), arg


def test_fcn_paper_network_keeps_the_100_pixel_padding():
  path = os.path.join(ROOT, "configs", "fcn8s.py")
  assert _load(path, "").model.input_padding == 0
  assert _load(path, "paper").model.input_padding == 100
  assert _load(path, "voc2012").model.input_padding == 100


# torchvision's documented parameter counts of its segmentation weights
# (auxiliary head included): its checkpoints fill these networks exactly.
TORCHVISION_PARAMETERS = {
  "deeplabv3_resnet50": 42_004_074,
  "deeplabv3_resnet101": 60_996_202,
  "fcn_resnet50": 35_322_218,
  "fcn_resnet101": 54_314_346,
  "deeplabv3_mobilenet_v3_large": 11_029_328,
  "lraspp_mobilenet_v3_large": 3_221_538,
}


@pytest.mark.parametrize("variant", TORCHVISION_PARAMETERS)
def test_torchvision_networks_have_torchvisions_parameter_counts(variant):
  config = _load(os.path.join(ROOT, "configs", "torchvision.py"), variant)
  assert config.model.weights == f"torchvision:{variant}"
  model = create_model(config, get_dataset_spec(config.data).num_classes)
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(lambda: model.init(rngs, jnp.zeros((1, 64, 64, 3)), train=True))
  count = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
  assert count == TORCHVISION_PARAMETERS[variant]


def test_unknown_model_attribute_is_named():
  config = _load(os.path.join(ROOT, "configs", "psp.py"), "")
  with config.unlocked():
    config.model.not_a_field = 3
  with pytest.raises(ValueError, match=r"config\.model\.not_a_field"):
    create_model(config, 5)


def test_unknown_dataset_is_named():
  with pytest.raises(ValueError, match=r"config\.data\.name='nope'"):
    get_dataset_spec("nope")
