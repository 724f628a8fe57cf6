"""Published weights by name: download once into a cache, then read offline.

`config.model.weights` is a local file or directory, or a name:

- `hf:ORG/NAME` (or `hf:ORG/NAME@REVISION`): a Hugging Face Hub repository's
  `config.json` and `model.safetensors` (`pytorch_model.bin` where it has no
  safetensors), from `$HF_ENDPOINT` (default https://huggingface.co) with
  `$HF_TOKEN` if set. The Hub states each large file's SHA-256
  (`X-Linked-Etag`); a download that does not match it is refused.
- `torchvision:NAME` (`deeplabv3_resnet50` ...): torchvision's published
  file, from `$JAXSEG_TORCHVISION_URL` (default
  https://download.pytorch.org/models); its name carries the first hex digits
  of its SHA-256, which the download must match.

The cache is `$JAXSEG_CACHE` (default `~/.cache/jaxseg`), under `weights/`.
A file is written under a temporary name and renamed when complete and
checked, so a killed download never leaves a file under the final name; a
cached name is read without touching the network.
"""

import hashlib
import os
import re
import sys
import urllib.error
import urllib.request

from jaxseg import errors

HF_ENDPOINT = "https://huggingface.co"
TORCHVISION_URL = "https://download.pytorch.org/models"
# torchvision's segmentation checkpoints (COCO with VOC's 21 classes): file
# names as torchvision publishes them, the hex after the dash the start of
# their SHA-256.
TORCHVISION_FILES = {
  "fcn_resnet50": "fcn_resnet50_coco-1167a1af.pth",
  "fcn_resnet101": "fcn_resnet101_coco-7ecb50ca.pth",
  "deeplabv3_resnet50": "deeplabv3_resnet50_coco-cd0a2569.pth",
  "deeplabv3_resnet101": "deeplabv3_resnet101_coco-586e9e4e.pth",
  "deeplabv3_mobilenet_v3_large": "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
  "lraspp_mobilenet_v3_large": "lraspp_mobilenet_v3_large-d234d4ea.pth",
}
_HF_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")


def cache_dir() -> str:
  """Where downloaded weights live: `$JAXSEG_CACHE/weights` (default `~/.cache/jaxseg`)."""
  root = os.environ.get("JAXSEG_CACHE") or os.path.join("~", ".cache", "jaxseg")
  return os.path.join(os.path.expanduser(root), "weights")


def resolve(weights: str, key: str = "config.model.weights") -> str:
  """The local path of `weights` (a path, `hf:...` or `torchvision:...`),
  downloading it into the cache first if it is a name not yet there."""
  if weights.startswith("hf:"):
    return _hugging_face(weights, key)
  if weights.startswith("torchvision:"):
    return _torchvision(weights, key)
  path = os.path.expanduser(weights)
  if not os.path.exists(path):
    raise errors.MissingInput(
      f"{key}={weights!r}: no such file or directory (names: hf:ORG/NAME, torchvision:NAME)"
    )
  return path


def _hugging_face(weights: str, key: str) -> str:
  name, _, revision = weights[3:].partition("@")
  revision = revision or "main"
  if not _HF_NAME.match(name):
    raise errors.InvalidInput(f"{key}={weights!r}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION")
  directory = os.path.join(cache_dir(), "hf", *name.split("/"), revision)
  if _complete(directory):
    return directory
  endpoint = os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")
  url = lambda file: f"{endpoint}/{name}/resolve/{revision}/{file}"
  try:
    _download(url("config.json"), os.path.join(directory, "config.json"), None)
    try:
      _download(url("model.safetensors"), os.path.join(directory, "model.safetensors"), None)
    except urllib.error.HTTPError as e:
      if e.code != 404:
        raise
      _download(url("pytorch_model.bin"), os.path.join(directory, "pytorch_model.bin"), None)
  except (OSError, urllib.error.URLError) as e:
    raise _offline(weights, key, directory, e) from None
  return directory


def _complete(directory: str) -> bool:
  """Whether a Hub snapshot in the cache has its config and its weights."""
  return os.path.isfile(os.path.join(directory, "config.json")) and any(
    os.path.isfile(os.path.join(directory, f)) for f in ("model.safetensors", "pytorch_model.bin")
  )


def _torchvision(weights: str, key: str) -> str:
  name = weights.split(":", 1)[1]
  if name not in TORCHVISION_FILES:
    raise errors.InvalidInput(
      f"{key}={weights!r}: not a torchvision segmentation checkpoint jaxseg reads; known: "
      + ", ".join(sorted(TORCHVISION_FILES))
    )
  file = TORCHVISION_FILES[name]
  path = os.path.join(cache_dir(), "torchvision", file)
  if os.path.isfile(path):
    return path
  base = os.environ.get("JAXSEG_TORCHVISION_URL", TORCHVISION_URL).rstrip("/")
  prefix = file.rsplit("-", 1)[1].split(".")[0]
  try:
    _download(f"{base}/{file}", path, prefix)
  except (OSError, urllib.error.URLError) as e:
    raise _offline(weights, key, os.path.dirname(path), e) from None
  return path


def _offline(weights: str, key: str, directory: str, cause: Exception) -> errors.MissingInput:
  reason = getattr(cause, "reason", None) or cause
  return errors.MissingInput(
    f"{key}={weights!r} is not in the cache ({directory}) and could not be downloaded "
    f"({reason}): run once with network access, copy the files into that folder, or set "
    f"{key} to a local file"
  )


def _download(url: str, path: str, sha256_prefix: str | None) -> None:
  """`url` -> `path`, via a temporary file renamed when complete; checks the
  SHA-256 against `sha256_prefix` or the server's `X-Linked-Etag`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  request = urllib.request.Request(url)
  if os.environ.get("HF_TOKEN") and "/resolve/" in url:
    request.add_header("Authorization", f"Bearer {os.environ['HF_TOKEN']}")
  partial = f"{path}.partial-{os.getpid()}"
  digest = hashlib.sha256()
  try:
    with urllib.request.urlopen(request, timeout=60) as response, open(partial, "wb") as out:
      total = int(response.headers.get("Content-Length") or 0)
      linked = (response.headers.get("X-Linked-Etag") or "").strip('"')
      expected = sha256_prefix or (linked if re.fullmatch(r"[0-9a-f]{64}", linked) else None)
      done = 0
      while chunk := response.read(1 << 20):
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if total > (8 << 20):
          print(f"\r{url}: {done >> 20} of {total >> 20} MiB", end="", file=sys.stderr)
      if total > (8 << 20):
        print(file=sys.stderr)
    if total and done != total:
      raise OSError(f"{url}: the download ended after {done} of {total} bytes")
    if expected and not digest.hexdigest().startswith(expected):
      raise errors.InvalidInput(
        f"{url}: SHA-256 {digest.hexdigest()} does not match the published {expected}; "
        "the file was not kept"
      )
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
