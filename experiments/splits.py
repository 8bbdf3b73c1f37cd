"""Train / held-out split of the DAVIS 2016 data in ../shared/data.

The held-out sequences are never trained on: checkpoints are validated end to end on them
(against warp-only propagation, DESIGN.md "Lessons"). The lists live in the training config
(`vsreid_jax/configs/train_propagation.py`) so that the package works without this folder;
this module re-exports them and resolves the data folder beside the repo.
"""
import pathlib
from typing import Dict, List, Optional, Tuple

from vsreid_jax.configs.train_propagation import DATA_ROOTS, HELD_OUT
from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.splits import shared_data_dir

ROOT_480P, ROOT_240P = (name for name, _ in DATA_ROOTS)
RESOLUTION = dict(DATA_ROOTS)  # root folder name -> resolution folder
HELD_OUT_480P = HELD_OUT[ROOT_480P]
HELD_OUT_240P = HELD_OUT[ROOT_240P]


def root_path(name: str, data_dir: Optional[pathlib.Path] = None) -> pathlib.Path:
  return pathlib.Path(data_dir or shared_data_dir()) / name


def split(data_dir: Optional[pathlib.Path] = None) -> Dict[str, Tuple[List[str], List[str]]]:
  """{root name: (train sequences, held-out sequences)} from each root's train.txt."""
  out = {}
  for name, resolution in DATA_ROOTS:
    seqs = DavisDataset(root_path(name, data_dir), resolution).sequences("train")
    held = HELD_OUT.get(name, ())
    out[name] = ([s for s in seqs if s not in held], [s for s in seqs if s in held])
  return out


if __name__ == "__main__":
  for root, (train, val) in split().items():
    print(f"{root}: train {len(train)} ({' '.join(train)}); held out {' '.join(val)}")
