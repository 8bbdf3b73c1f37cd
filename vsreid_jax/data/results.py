"""Writing results: palette PNGs per sequence, atomically, and an optional overlay video.

A sequence is written into a hidden temporary folder beside its destination and renamed into
place only when every frame is written, so an interrupted run never leaves a folder that looks
complete (the DAVIS evaluator would score a half-written folder as missing frames).
"""
import os
import shutil
import tempfile

import cv2
import numpy as np

from vsreid_jax.data.palette import PALETTE, write_mask


class SequenceWriter:
  """Context manager: `with SequenceWriter(out_dir, seq) as w: w.write(name, ids)`."""

  def __init__(self, out_dir, sequence: str, overlay_fps: float = 0.0):
    self.out_dir = os.fspath(out_dir)
    self.sequence = sequence
    self.final = os.path.join(self.out_dir, sequence)
    self.overlay_fps = overlay_fps
    self.overlay_path = os.path.join(self.out_dir, f"{sequence}_overlay.mp4") if overlay_fps else None
    self._video = None
    self.count = 0

  def __enter__(self):
    os.makedirs(self.out_dir, exist_ok=True)
    self.tmp = tempfile.mkdtemp(prefix=f".{self.sequence}.partial-", dir=self.out_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes it private; results are ordinary folders
    return self

  def write(self, frame_name: str, ids: np.ndarray, image: np.ndarray = None):
    write_mask(os.path.join(self.tmp, frame_name + ".png"), ids)
    self.count += 1
    if self.overlay_path and image is not None:
      if self._video is None:
        h, w = ids.shape
        self._video = cv2.VideoWriter(os.path.join(self.tmp, "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                      self.overlay_fps, (w, h))
      self._video.write(cv2.cvtColor(overlay(image, ids), cv2.COLOR_RGB2BGR))

  def __exit__(self, exc_type, exc, tb):
    if self._video is not None:
      self._video.release()
    if exc_type is not None:
      shutil.rmtree(self.tmp, ignore_errors=True)
      return False
    if self._video is not None:
      os.replace(os.path.join(self.tmp, "overlay.mp4"), self.overlay_path)
    if os.path.isdir(self.final):
      shutil.rmtree(self.final)
    os.replace(self.tmp, self.final)
    return False


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """RGB frame with objects tinted in their DAVIS palette colour and outlined."""
  out = image.astype(np.float32)
  colour = PALETTE[ids].astype(np.float32)
  fg = ids > 0
  out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
  edges = cv2.morphologyEx(ids, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
  out[edges] = colour[edges] * 0.6
  return out.clip(0, 255).astype(np.uint8)
