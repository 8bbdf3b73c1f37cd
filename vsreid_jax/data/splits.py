"""The one place that says which sequences train, validate and test.

The 27 real DAVIS-2016 training sequences in `../shared/data` are split three ways, fixed before
any of this round's training or tuning:

- ``train``: everything a net may be trained on (17 sequences).
- ``val``: 4 sequences (2 per root) that choices are made on: checkpoints, thresholds, levers,
  defaults. Never trained on by nets trained from this round on. (The nets shipped before this
  split, N_mp step 2000, the detector and the ReID net, did train on them: figures of those nets
  on ``val`` are optimistic.)
- ``test``: the 6 sequences held out since the first round (never trained on by any shipped net),
  scored once at the end of a round to report; never used to choose.

This module imports nothing from the package, so every layer can use it.
"""
import pathlib
from typing import Dict, Tuple

# Data roots under ../shared/data and their resolution folders.
DATA_ROOTS = (("davis2016-train", "480p"), ("davis2016-train-240p", "240p"))

VAL: Dict[str, Tuple[str, ...]] = {
    "davis2016-train": ("kite-walk", "rollerblade"),
    "davis2016-train-240p": ("bmx-bumps", "breakdance-flare"),
}
TEST: Dict[str, Tuple[str, ...]] = {
    "davis2016-train": ("dance-jump", "motorbike", "scooter-gray"),
    "davis2016-train-240p": ("car-turn", "horsejump-low", "soccerball"),
}
SPLITS = ("train", "val", "test")


def shared_data_dir() -> pathlib.Path:
  """<repo>/../shared/data: the folder holding DATA_ROOTS beside the repository checkout (the
  default `--data-dir` of `vsreid train`, wherever the command is run from)."""
  return pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def held_out(split: str = "all") -> Dict[str, Tuple[str, ...]]:
  """{root: sequences never trained on}: the validation and the test split together ("all"), or
  one of them ("val", "test")."""
  if split not in ("all", "val", "test"):
    raise ValueError(f"split {split!r}: held_out() takes 'all', 'val' or 'test'")
  return {root: (VAL.get(root, ()) if split in ("all", "val") else ()) +
                (TEST.get(root, ()) if split in ("all", "test") else ()) for root, _ in DATA_ROOTS}


def never_trained(split: str = "all") -> Tuple[str, ...]:
  """`held_out(split)` as one tuple over all DATA_ROOTS; "all" (the validation and test splits) is
  what training leaves out (the training configs' `data.held_out`)."""
  return tuple(s for seqs in held_out(split).values() for s in seqs)


def split_of(root: str, sequence: str) -> str:
  """"train", "val" or "test" for a sequence of one of the DATA_ROOTS (unknown roots: "train")."""
  if sequence in TEST.get(root, ()):
    return "test"
  if sequence in VAL.get(root, ()):
    return "val"
  return "train"


def sequences(split: str, root: str) -> Tuple[str, ...]:
  """The fixed `val` or `test` sequences of a root (`train` is every other sequence of the root's
  train.txt, so it needs the data: filter with `split_of`)."""
  if split == "val":
    return VAL.get(root, ())
  if split == "test":
    return TEST.get(root, ())
  raise ValueError(f"split {split!r}: sequences() lists 'val' or 'test'; filter train with split_of")
