"""A tensorflow-datasets builder of pre-sampled N_mp examples, written as array_record.

TFDS >= 4.9 writes array_record and reads it back with `builder.as_data_source()` (random
access, numpy out) without TensorFlow installed. The builder materialises examples 0..N-1 of
`PropagationExamples` for a train spec and a held-out spec (`propagation_examples.make_spec`);
shuffling is disabled, so record i *is* example i, and the python and tfds data sources give the
same batches. The config name is a hash of the specs and counts: a changed spec is a new dataset.

Needs `pip install tensorflow-datasets array-record` (see requirements.txt).
"""
import json
import os
from typing import Dict, Optional

import numpy as np

from vsreid_jax.data import propagation_examples as pe


def _tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("data.source='tfds' needs `pip install tensorflow-datasets array-record` "
                      "(no TensorFlow needed); or set config.data.source='python'") from e
  return tfds


def _builder_class():
  tfds = _tfds()

  class DavisPropagation(tfds.core.GeneratorBasedBuilder):
    """Crops (image, flow i -> i-1, prior, target) for N_mp from DAVIS-layout roots."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Pre-sampled examples of vsreid_jax.data.propagation_examples."}

    def __init__(self, *, specs: Dict[str, dict], num_examples: Dict[str, int], cache_dir: Optional[str] = None,
                 **kwargs):
      self.specs = specs
      self.num_examples = num_examples
      self.cache_dir = cache_dir
      name = f"s{specs['train']['crop_size']}_{pe.spec_hash(specs, num_examples)}"
      config = tfds.core.BuilderConfig(name=name, description=json.dumps(
          dict(specs=specs, num_examples=num_examples), sort_keys=True))
      super().__init__(config=config, file_format="array_record", **kwargs)

    def _info(self):
      s = self.specs["train"]["crop_size"]
      t = tfds.features.Tensor
      zlib = tfds.features.Encoding.ZLIB
      return tfds.core.DatasetInfo(
          builder=self,
          description=self.builder_config.description,
          disable_shuffling=True,  # record i is example i
          features=tfds.features.FeaturesDict({
              "image": t(shape=(s, s, 3), dtype=np.uint8),
              "flow": t(shape=(s, s, 2), dtype=np.float16, encoding=zlib),
              "prior": t(shape=(s, s, 1), dtype=np.uint8, encoding=zlib),
              "target": t(shape=(s, s, 1), dtype=np.uint8, encoding=zlib),
              "kind": tfds.features.Scalar(dtype=np.int64),
              "index": tfds.features.Scalar(dtype=np.int64),
          }))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in self.specs}

    def _generate_examples(self, split):
      examples = pe.PropagationExamples(self.specs[split], self.cache_dir)
      examples.precompute_flows()
      for i in range(self.num_examples[split]):
        yield i, examples.example(i)

  return DavisPropagation


def prepare(train_spec: dict, val_spec: dict, num_train: int, num_val: int, data_dir: str,
            cache_dir: Optional[str] = None):
  """Builds (once) and returns the builder; `builder.as_data_source()[split][i]` is example i."""
  builder = _builder_class()(specs={"train": train_spec, "validation": val_spec},
                             num_examples={"train": int(num_train), "validation": int(num_val)},
                             cache_dir=cache_dir, data_dir=os.fspath(data_dir))
  builder.download_and_prepare()
  return builder


def data_sources(train_spec, val_spec, num_train, num_val, data_dir, cache_dir=None):
  """{"train": source, "validation": source}: random-access sequences of decoded numpy records."""
  return prepare(train_spec, val_spec, num_train, num_val, data_dir, cache_dir).as_data_source()
