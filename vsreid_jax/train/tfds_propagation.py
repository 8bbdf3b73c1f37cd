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
from typing import Dict, List, Optional

import numpy as np

from vsreid_jax.errors import InputError

from vsreid_jax.train import propagation_examples as pe

# Examples per split shard. TFDS buffers a split in memory up to 1 GiB and spills beyond that
# through tf.io.gfile, which needs TensorFlow; shards of 2000 crops (<0.5 GiB at S=193) never spill.
SHARD_EXAMPLES = 2000


def shard_splits(split: str, num_examples: int) -> List[tuple]:
  """[(split name, first example index, count)] covering examples 0..num_examples-1."""
  starts = range(0, max(num_examples, 1), SHARD_EXAMPLES)
  return [(f"{split}_{k:03d}", start, min(SHARD_EXAMPLES, num_examples - start)) for k, start in enumerate(starts)]


class ConcatSource:
  """Random access over several data sources as one sequence (the shards of a split)."""

  def __init__(self, sources):
    self.sources = list(sources)
    self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

  def __len__(self):
    return int(self.offsets[-1])

  def __getitem__(self, i):
    if not 0 <= i < len(self):
      raise IndexError(i)
    k = int(np.searchsorted(self.offsets, i, side="right")) - 1
    return self.sources[k][i - int(self.offsets[k])]


def _tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise InputError("tensorflow_datasets: not installed; training from pre-sampled examples "
                     "(data.source='tfds') needs the train extra: pip install -e '.[train]' "
                     "(no TensorFlow needed), or set data.source='python'") from None
  return tfds


def _builder_class():
  tfds = _tfds()

  class DavisPropagation(tfds.core.GeneratorBasedBuilder):
    """Crops (image, flow i -> i-1, prior, target) for N_mp from DAVIS-layout roots."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Pre-sampled examples of vsreid_jax.train.propagation_examples."}

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
      return {name: self._generate_examples(split, start, count)
              for split in self.specs for name, start, count in shard_splits(split, self.num_examples[split])}

    def _generate_examples(self, split, start, count):
      examples = pe.PropagationExamples(self.specs[split], self.cache_dir)
      examples.precompute_flows()
      for i in range(start, start + count):
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
  sources = prepare(train_spec, val_spec, num_train, num_val, data_dir, cache_dir).as_data_source()
  counts = {"train": num_train, "validation": num_val}
  return {split: ConcatSource(sources[name] for name, _, _ in shard_splits(split, n)) for split, n in counts.items()}
