"""Writing result files so that a failure (a full disk, a file-size limit, no
permission) leaves no half-written file and ends in one line naming the path:
each file is written beside its place and renamed into it when complete."""

import io
import os

from PIL import Image

from jaxseg import errors


def write_atomically(path: str, data: bytes | str) -> None:
  """Writes `data` to `path` through `path.partial`; raises `errors.WriteFailed`."""
  partial = path + ".partial"
  try:
    with open(partial, "w" if isinstance(data, str) else "wb") as f:
      f.write(data)
    os.replace(partial, path)
  except OSError as e:
    if os.path.exists(partial):
      os.remove(partial)
    raise errors.write_failed(path, e) from e


def save_image(image: Image.Image, path: str, **options) -> None:
  """`image.save(path, **options)`, encoded in memory and written atomically."""
  buffer = io.BytesIO()
  image.save(buffer, format=Image.registered_extensions()[os.path.splitext(path)[1].lower()],
             **options)  # fmt: skip
  write_atomically(path, buffer.getvalue())
