"""Published weights by name (`models.fetch`), served by a loopback HTTP
server that the tests write: downloads once, checks the SHA-256 the server
states, never leaves a partial file under the final name, then works offline
from the cache, and says in one line what to do when offline and not cached."""

import hashlib
import http.server
import os
import threading

import pytest

from jaxseg import errors
from jaxseg.models import fetch


class Server:
  """A Hub-like server on 127.0.0.1: `files` maps URL paths to bytes; a path
  in `truncate` is sent with a Content-Length larger than its body."""

  def __init__(self, files: dict[str, bytes], *, linked_etag: dict | None = None, truncate=()):
    etags, truncated, requests = linked_etag or {}, set(truncate), []
    self.requests = requests

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):
        requests.append(self.path)
        body = files.get(self.path)
        if body is None:
          self.send_error(404)
          return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (100 if self.path in truncated else 0)))
        if self.path in etags:
          self.send_header("X-Linked-Etag", f'"{etags[self.path]}"')
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  def stop(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("no_proxy", "127.0.0.1")  # The test server is never behind a proxy.
  return tmp_path / "cache" / "weights"


def _hub(weights=b"weights-bytes", etag=None, **kwargs):
  base = "/org/net/resolve/main/"
  files = {base + "config.json": b'{"id2label": {"0": "a"}}', base + "model.safetensors": weights}
  sha = etag or hashlib.sha256(weights).hexdigest()
  return Server(files, linked_etag={base + "model.safetensors": sha}, **kwargs)


def test_a_hub_name_downloads_once_then_reads_offline(cache, monkeypatch):
  server = _hub()
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  path = fetch.resolve("hf:org/net")
  assert path == str(cache / "hf" / "org" / "net" / "main")
  assert open(os.path.join(path, "model.safetensors"), "rb").read() == b"weights-bytes"
  server.stop()
  assert fetch.resolve("hf:org/net") == path  # No server: from the cache.
  assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]


def test_a_download_whose_sha256_differs_is_refused_and_not_kept(cache, monkeypatch):
  server = _hub(etag="0" * 64)
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  with pytest.raises(errors.InvalidInput, match=r"SHA-256 .* does not match the published 0{64}"):
    fetch.resolve("hf:org/net")
  directory = cache / "hf" / "org" / "net" / "main"
  assert sorted(os.listdir(directory)) == ["config.json"]  # No weights, no partial file.
  server.stop()


def test_a_cut_download_leaves_nothing_under_the_final_name(cache, monkeypatch):
  server = _hub(truncate=("/org/net/resolve/main/model.safetensors",))
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  with pytest.raises(errors.MissingInput, match="could not be downloaded"):
    fetch.resolve("hf:org/net")
  assert "model.safetensors" not in os.listdir(cache / "hf" / "org" / "net" / "main")
  assert not [f for f in os.listdir(cache / "hf" / "org" / "net" / "main") if "partial" in f]
  server.stop()


def test_a_repository_without_safetensors_gives_its_torch_file(cache, monkeypatch):
  base = "/org/old/resolve/v1/"
  server = Server({base + "config.json": b"{}", base + "pytorch_model.bin": b"torch"})
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  path = fetch.resolve("hf:org/old@v1")
  assert sorted(os.listdir(path)) == ["config.json", "pytorch_model.bin"]
  server.stop()


def test_offline_and_not_cached_says_what_to_do_in_one_line(cache, monkeypatch):
  server = _hub()
  server.stop()  # Nothing listens there now.
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  with pytest.raises(errors.MissingInput) as raised:
    fetch.resolve("hf:org/net")
  message = str(raised.value)
  assert "\n" not in message
  assert "is not in the cache" in message and "run once with network access" in message


def test_torchvision_files_are_checked_against_their_name(cache, monkeypatch):
  file = fetch.TORCHVISION_FILES["deeplabv3_resnet50"]
  server = Server({f"/models/{file}": b"not the published file"})
  monkeypatch.setenv("JAXSEG_TORCHVISION_URL", server.url + "/models")
  with pytest.raises(errors.InvalidInput, match="does not match the published cd0a2569"):
    fetch.resolve("torchvision:deeplabv3_resnet50")
  assert not os.path.exists(cache / "torchvision" / file)
  server.stop()


@pytest.mark.parametrize(
  "name,message",
  [
    ("hf:no-slash", "expected hf:ORG/NAME"),
    ("torchvision:resnet50", "not a torchvision segmentation checkpoint"),
    ("/no/such/file.safetensors", "no such file"),
  ],
)
def test_bad_names_are_one_line_errors(cache, name, message):
  with pytest.raises(errors.UserError, match=message):
    fetch.resolve(name)
