"""Label maps of the TFDS-hosted datasets, applied by the pipeline's check."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxseg.data import get_dataset_spec, pipeline


@pytest.mark.parametrize("name", ["cityscapes", "oxford_iiit_pet"])
def test_tfds_hosted_datasets_map_their_labels(name):
  spec = get_dataset_spec(name)
  tfds_name = "cityscapes/semantic_segmentation" if name == "cityscapes" else spec.tfds_name
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    example = tfds.builder(tfds_name).as_data_source(spec.eval_split)[0]
  raw = example[spec.label_key][..., 0]
  # Mocked images are random and of their own size; only the label is real here.
  example = {**example, spec.image_key: np.zeros((*raw.shape, 3), np.uint8)}
  check = pipeline._DecodeAndCheck(spec, name, spec.eval_split, 2)
  got = check(0, example)["label"]
  np.testing.assert_array_equal(got, np.asarray(spec.label_map)[raw])
  assert set(np.unique(got).tolist()) <= set(range(spec.num_classes)) | {255}
