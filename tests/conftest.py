"""Shared fixtures: a tiny embedded dataset built once per session, tiny configs."""

import pytest

from jaxseg.data.builders import synthetic_shapes


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir holding `synthetic_shapes/tiny` (64×64, 48 train / 20 val)."""
  path = tmp_path_factory.mktemp("tfds")
  builder = synthetic_shapes.SyntheticShapes(config="tiny", data_dir=str(path))
  builder.download_and_prepare(file_format="array_record")
  return str(path)
