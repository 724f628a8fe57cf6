"""Multi-band, 16-bit images: a folder of 4-band uint16 TIFFs trains with its
own per-band statistics, and predicts and exports end to end."""

import json
import os

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from jaxseg import errors, inference
from jaxseg.data import images, pipeline, preprocessing
from jaxseg.export import exporter
from jaxseg.models import pretrained
from jaxseg.training import loop, runs
from tests.helpers import run_command, tiny_folder_config

BANDS = 4


def _scene(rng, h, w):
  """A 4-band uint16 scene (blue, green, red, near-infrared, as satellites
  store them) where vegetation (class 1) is bright in near-infrared."""
  vegetation = np.zeros((h, w), bool)
  for _ in range(3):
    y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 10)
    yy, xx = np.mgrid[:h, :w]
    vegetation |= (yy - y) ** 2 + (xx - x) ** 2 < r * r
  base = rng.normal([900, 1100, 1000, 1500], 120, (h, w, BANDS))
  base[vegetation, 3] += 2500  # Near-infrared of leaves.
  base[vegetation, 2] -= 300
  return np.clip(base, 0, 65535).astype(np.uint16), vegetation.astype(np.uint8)


def _write_tiff_folder(root, rng, n=10):
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  (root / "classes.json").write_text(json.dumps({"classes": ["ground", "vegetation"]}))
  written = {}
  for i in range(n):
    image, mask = _scene(rng, 40 + 2 * i, 48)
    planar = i % 2  # Both TIFF layouts: bands last and bands first (planar).
    data = np.moveaxis(image, -1, 0) if planar else image
    tifffile.imwrite(
      root / "images" / f"tile{i}.tif", data, photometric="minisblack",
      planarconfig="separate" if planar else "contig", compression="zlib",
    )  # fmt: skip
    Image.fromarray(mask).save(root / "masks" / f"tile{i}.png")
    written[f"tile{i}"] = image
  return written


def _config(tmp_path, folder):
  overrides = {"data.channels": BANDS, "data.max_size": (64, 64), "num_train_steps": 3}
  return tiny_folder_config(str(tmp_path / "data"), folder, eval_every_steps=3, **overrides)


@pytest.mark.slow
def test_four_band_16bit_tiff_folder_trains_predicts_and_exports(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "tiles"
  written = _write_tiff_folder(folder, rng)
  config = _config(tmp_path, folder)
  workdir = tmp_path / "run"
  result = loop.train_and_evaluate(config, str(workdir))
  assert result["step"] == 3 and 0 <= result["miou"] <= 1

  # The run used the training split's per-band statistics, stored with the dataset.
  spec, builder = pipeline.prepare(config)
  with open(os.path.join(builder.data_dir, pipeline.BAND_STATS_FILE)) as f:
    stats = json.load(f)
  decoded, _ = pipeline.decoded_split(config, spec, builder, "train")
  pixels = np.concatenate([decoded[i]["image"].reshape(-1, BANDS) for i in range(len(decoded))])
  np.testing.assert_allclose(stats["mean"], pixels.mean(0), atol=1e-3)
  np.testing.assert_allclose(stats["std"], pixels.std(0), rtol=1e-4)
  run_config = runs.load_run_config(str(workdir))
  assert run_config.data.dtype == "uint16" and list(run_config.data.mean) == stats["mean"]
  norm = preprocessing.from_config(run_config)
  assert norm.channels == BANDS and norm.pad.dtype == np.uint16
  # The folder's images were stored as they are: both TIFF layouts read alike.
  source = builder.as_data_source("train")
  for i in range(len(source)):
    example = source[i]
    np.testing.assert_array_equal(example["image"], written[example["file_name"].decode()])
  assert Image.open(workdir / "predictions.png").mode == "RGB"

  # predict: the same TIFFs (and a .npy), label maps equal to the run's own
  # sliding-window inference, overlays from the chosen bands.
  inputs, outputs = tmp_path / "in", tmp_path / "out"
  inputs.mkdir()
  scene, _ = _scene(rng, 70, 90)
  tifffile.imwrite(inputs / "scene.tif", scene)
  np.save(inputs / "array.npy", scene[:50, :60])
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(inputs / "rgb.png")
  out = run_command(
    "jaxseg.predict", f"--workdir={workdir}", f"--input={inputs}", f"--output={outputs}",
    "--mode=slide", "--crop_size=32,32", "--rgb_bands=3,2,1",
  )  # fmt: skip
  assert out.returncode == 1, out.stderr[-3000:]
  assert "2 of 3 images predicted" in out.stdout
  assert "rgb.png: 3 bands of uint8; the run was trained on 4 bands of uint16" in out.stderr
  _, _, predict_fn = runs.load_predictor(str(workdir), "best")
  for name, image in (("scene", scene), ("array", scene[:50, :60])):
    saved = np.asarray(Image.open(outputs / f"{name}.png"))
    expected = inference.slide(
      predict_fn, image, crop_size=(32, 32), stride=(21, 21), pad=norm.pad
    ).argmax(-1)
    np.testing.assert_array_equal(saved, expected)
    overlay = Image.open(outputs / f"{name}_overlay.jpg")
    assert overlay.size == (image.shape[1], image.shape[0]) and overlay.mode == "RGB"

  # export: the 4-band uint16 input and the run's normalisation inside the model.
  out_dir = tmp_path / "export"
  exporter.export_run(str(workdir), str(out_dir), size=(32, 32))
  with open(out_dir / "metadata.json") as f:
    metadata = json.load(f)
  assert metadata["channels"] == BANDS and metadata["input_dtype"] == "uint16"
  from jaxseg.export.serving import ExportedSegmenter

  served = ExportedSegmenter(str(out_dir)).logits(scene[None, :32, :32])
  np.testing.assert_allclose(served, predict_fn(scene[None, :32, :32]), atol=1e-4)


@pytest.mark.slow
def test_reader_takes_tiff_layouts_16bit_png_and_arrays_and_names_bad_files(tmp_path):
  rng = np.random.default_rng(1)
  rgb16 = rng.integers(0, 65536, (9, 7, 3), np.uint16)
  (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb16))
  np.testing.assert_array_equal(images.read_image(str(tmp_path / "rgb16.png")), rgb16)
  grey16 = rng.integers(0, 65536, (9, 7), np.uint16)
  Image.fromarray(grey16).save(tmp_path / "grey16.png")
  np.testing.assert_array_equal(images.read_image(str(tmp_path / "grey16.png")), grey16[..., None])
  bands = rng.integers(0, 256, (6, 9, 7), np.uint8)
  tifffile.imwrite(
    tmp_path / "planar.tif", bands, planarconfig="separate", photometric="minisblack"
  )
  np.testing.assert_array_equal(
    images.read_image(str(tmp_path / "planar.tif")), np.moveaxis(bands, 0, -1)
  )
  big = np.zeros((13_500, 13_500), np.uint8)  # 182 MP: over Pillow's bomb limit.
  Image.fromarray(big).save(tmp_path / "big.png")
  assert images.read_image(str(tmp_path / "big.png")).shape == (13_500, 13_500, 3)
  del big

  tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4, 2), np.float32))
  with pytest.raises(errors.InvalidInput, match=r"float.tif: samples are float32.*uint16"):
    images.read_image(str(tmp_path / "float.tif"))
  (tmp_path / "broken.tif").write_bytes(b"II*\x00 not really")
  with pytest.raises(errors.InvalidInput, match=r"broken.tif: unreadable image"):
    images.read_image(str(tmp_path / "broken.tif"))
  with pytest.raises(errors.InvalidInput, match=r"notes.txt: not an image jaxseg reads"):
    (tmp_path / "notes.txt").write_text("x")
    images.read_image(str(tmp_path / "notes.txt"))


def test_pictures_stretch_the_chosen_bands():
  image = np.zeros((10, 10, 4), np.uint16)
  image[..., 3] = np.arange(100).reshape(10, 10) * 100
  image[..., 0] = 7
  rgb = images.to_rgb(image, (3, 3, 0))
  assert rgb.dtype == np.uint8 and rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255
  assert np.all(rgb[..., 2] == 0)  # A constant band shows as black, not noise.
  same = np.zeros((4, 4, 3), np.uint8)
  assert images.to_rgb(same) is same  # uint8 RGB is shown as it is.
  with pytest.raises(errors.InvalidInput, match=r"rgb_bands=\(4, 2, 1\).*4 bands"):
    images.to_rgb(image, (4, 2, 1))


def test_first_convolution_adapts_to_n_bands_as_timm_does():
  kernel = np.random.default_rng(2).normal(size=(7, 7, 3, 16)).astype(np.float32)
  assert pretrained.is_input_conv(kernel.shape, (7, 7, 4, 16))
  assert not pretrained.is_input_conv((3, 3, 64, 64), (3, 3, 32, 64))
  one = pretrained.adapt_input_conv(kernel, 1)
  np.testing.assert_allclose(one[:, :, 0], kernel.sum(2), rtol=1e-6)
  five = pretrained.adapt_input_conv(kernel, 5)
  np.testing.assert_allclose(five, np.concatenate([kernel, kernel[:, :, :2]], 2) * 0.6, rtol=1e-6)
  # With a multiple of 3 bands, an input whose bands all equal a grey image
  # responds exactly as the RGB kernel to grey RGB.
  six = pretrained.adapt_input_conv(kernel, 6)
  grey = np.random.default_rng(3).normal(size=(7, 7))
  np.testing.assert_allclose(
    np.einsum("hw,hwco->o", grey, six), np.einsum("hw,hwco->o", grey, kernel), rtol=1e-5
  )


def test_bad_multiband_inputs_end_in_one_error_line(tmp_path):
  """Mistakes with multi-band data stop before anything compiles, with one
  `error:` line naming the key or file, and exit status 2."""
  rng = np.random.default_rng(4)
  good = tmp_path / "good"
  _write_tiff_folder(good, rng, n=3)
  mixed = tmp_path / "mixed"
  _write_tiff_folder(mixed, rng, n=3)
  tifffile.imwrite(mixed / "images" / "tile2.tif", np.zeros((44, 48, 3), np.uint16))
  floats = tmp_path / "floats"
  _write_tiff_folder(floats, rng, n=3)
  tifffile.imwrite(floats / "images" / "tile1.tif", np.zeros((42, 48, 4), np.float32))
  four = ["--config.data.channels=4", "--config.augment.photometric=False"]
  cases = [
    (good, [], f"error: config.data.channels=3, but the images of {good} have 4 bands: set "
     "--config.data.channels=4"),
    (good, ["--config.data.channels=4", "--config.augment.photometric=True"],
     "error: config.augment.photometric=True distorts RGB colours"),
    (good, [*four, "--config.data.mean=(1.0,2.0,3.0)", "--config.data.std=(1.0,1.0,1.0)"],
     "error: config.data.mean has 3 values; the images have 4 bands"),
    (mixed, four,
     f"error: {mixed}/images/tile2.tif: 3 bands of uint16, but the folder's first image has 4"),
    (floats, four,
     f"error: {floats}/images/tile1.tif: samples are float32"),
  ]  # fmt: skip
  for folder, flags, start in cases:
    out = run_command(
      "jaxseg.main", "--config=configs/unet.py:folder", f"--config.data.folder={folder}",
      f"--config.data.data_dir={tmp_path / 'data'}", f"--workdir={tmp_path / 'run'}", *flags,
    )  # fmt: skip
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and last.startswith(start), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
  assert not (tmp_path / "run").exists()
