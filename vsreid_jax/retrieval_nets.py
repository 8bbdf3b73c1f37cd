"""Training the retrieval nets of Algorithm 2 in one call each: the detector and the ReID net
(`vsreid train --net detector|reid`; experiments/train_detector.py and train_reid.py wrap these).

Both train on the DAVIS 2016 training roots in `data_dir` (held-out sequences excluded) or, with
`config.data.datasets` / `val_datasets` (`--dataset` / `--val-dataset`, data/training_sets.py), on
the training sequences of those named datasets (the validation ones never read), resume
exactly from the latest orbax checkpoint in `workdir` with `resume`, and with `export` write the
float16 inference weights that `vsreid segment --detector/--reid` (and the shipped files) use.
"""
import os
from typing import Optional, Sequence

import numpy as np

from vsreid_jax import configs
from vsreid_jax.errors import InputError



def detector_config(name: str, overrides: Sequence[str] = ()):
  """The locked detector config `name` ("lite_cpu" or "detector_lite_cpu"), overrides applied."""
  full = name if name.startswith("detector_") else f"detector_{name}"
  if full not in configs.names("detector"):
    raise InputError(f"--config {name}: not a detector config; one of "
                     f"{', '.join(n[len('detector_'):] for n in configs.names('detector'))}")
  config = configs.get("detector", full)
  for assignment in overrides:
    configs.override(config, assignment)
  return config


def reid_config(name: str, overrides: Sequence[str] = ()):
  """The locked ReID config `name`, overrides applied."""
  if name not in configs.names("reid"):
    raise InputError(f"--config {name}: not a ReID config; one of {', '.join(configs.names('reid'))}")
  config = configs.get("reid", name)
  for assignment in overrides:
    configs.override(config, assignment)
  return config


def named_bank(d):
  """The ObjectBank of `d.datasets`' training sequences (data/training_sets.py), or None when the
  config names no dataset (the default DAVIS-2016 split then applies)."""
  if not (d.get("datasets", ()) or d.get("val_datasets", ())):
    return None
  from vsreid_jax.data import training_sets  # pylint: disable=g-import-not-at-top
  from vsreid_jax.data.objects import ObjectBank  # pylint: disable=g-import-not-at-top
  if not d.datasets or not d.val_datasets:
    raise InputError("--dataset and --val-dataset go together: name the training datasets and the validation "
                     "one (e.g. --dataset davis:DAVIS:480p:train --val-dataset davis:DAVIS:480p:val)")
  roots, train, _ = training_sets.split(d.datasets, d.val_datasets)
  return ObjectBank(roots, pairs=train)


def train_detector(config, workdir: str, data_dir: str, *, resume: bool = False, steps: Optional[int] = None,
                   export: Optional[str] = None, progress: bool = True) -> dict:
  """Trains the detector (copy-paste augmented frames) and optionally exports its weights.

  Args:
    config: a detector config (`detector_config`); config.data.data_dir, when set, wins over
      `data_dir`.
    workdir: checkpoints and metrics.
    data_dir: the folder holding the DATA_ROOTS (davis2016-train, davis2016-train-240p).
    resume: continue from the latest checkpoint in workdir.
    steps: stop after this global step (the schedule still spans config.train.steps).
    export: write float16 inference weights here at the end.
    progress: a progress bar.
  Returns:
    {"state", "train_rows"} of detection.train.train.
  """
  from vsreid_jax.data import splits  # pylint: disable=g-import-not-at-top
  from vsreid_jax.detection import data as det_data  # pylint: disable=g-import-not-at-top
  from vsreid_jax.detection import train as det_train  # pylint: disable=g-import-not-at-top
  bank = named_bank(config.data)
  if bank is None:
    data_dir = config.data.data_dir or data_dir
    held_out = list(splits.never_trained())
    bank = det_data.training_bank(data_dir, splits.DATA_ROOTS, held_out)
    source = f"held out: {' '.join(held_out)}"
  else:
    source = f"from {', '.join(config.data.datasets)}"
  data = det_data.CopyPasteData(bank, (config.input.height, config.input.width), config.data.max_boxes,
                                seed=config.data.seed, cfg=det_data.PasteConfig(max_paste=config.data.max_paste))
  print(f"{len(data.frames)} training frames, {len(bank.refs)} objects, {source}")
  out = det_train.train(config, workdir, data, resume=resume, stop_at=steps, progress=progress)
  if out["train_rows"]:
    print("last: " + ", ".join(f"{k}={v:.4g}" for k, v in out["train_rows"][-1].items()))
  if export:
    det_train.export(out["state"], export, config.name,
                     meta=dict(step=int(out["state"].step), data=", ".join(config.data.datasets) + ", copy-paste"
                               if config.data.datasets else "davis2016 train minus held-out, copy-paste"),
                     config=config)
    print(f"exported {export} ({os.path.getsize(export) / 1e6:.1f} MB)")
  return out


def train_reid(config, workdir: str, data_dir: str, *, resume: bool = False, steps: Optional[int] = None,
               export: Optional[str] = None, progress: bool = True) -> dict:
  """Trains the ReID net (P identities x K crops plus background and partial crops, supervised
  contrastive loss) and optionally exports its float16 weights. Args as `train_detector`.
  Returns the {"state", "rows"} of reid.train.train."""
  from vsreid_jax.reid import data as data_lib  # pylint: disable=g-import-not-at-top
  from vsreid_jax.reid import train as train_lib  # pylint: disable=g-import-not-at-top
  from vsreid_jax.train.export import export_checkpoint  # pylint: disable=g-import-not-at-top
  bank = named_bank(config.data)
  if bank is None:
    config.data.data_dir = data_dir
    bank = data_lib.data_bank(config.data, data_dir)
  batches = data_lib.ReIDBatches(bank, config)
  print(f"{len(batches.identities)} training identities, {len(bank.refs)} object boxes")
  out = train_lib.train(config, workdir, batches, resume=resume, stop_at=steps, progress=progress)
  last = out["rows"][-1] if out["rows"] else {}
  print("last log row:", {k: round(v, 4) for k, v in last.items()})
  if export:
    step = export_checkpoint(workdir, export, dtype=np.float16)
    print(f"exported step {step} to {export} ({os.path.getsize(export) / 1e6:.2f} MB)")
  return out
