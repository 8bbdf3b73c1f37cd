"""Browser-playable small videos and JPEG thumbnails with OpenCV.

Browsers play H.264 in MP4 and VP9 in WebM. OpenCV's pip wheels usually cannot encode H.264
(no licensed encoder), but their FFmpeg has libvpx: the codec is chosen by trying to write a tiny
clip, H.264 first.
"""
import contextlib
import functools
import os
import sys
import tempfile
from typing import Optional, Tuple

import cv2
import numpy as np

# (fourcc, file suffix, HTML MIME type), in order of preference.
CODECS = (("avc1", ".mp4", "video/mp4"), ("VP90", ".webm", "video/webm"))


@contextlib.contextmanager
def _quiet_stderr():
  """Silences file descriptor 2: FFmpeg prints errors of the probed encoders that do not exist."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as null:
      os.dup2(null.fileno(), 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _open_writer(path: str, fourcc: str, fps: float, size: Tuple[int, int]) -> Optional[cv2.VideoWriter]:
  with _quiet_stderr():
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
  if not writer.isOpened():
    writer.release()
    return None
  return writer


@functools.lru_cache(maxsize=None)
def browser_codec() -> Optional[Tuple[str, str, str]]:
  """The first of CODECS this OpenCV can write, or None."""
  with tempfile.TemporaryDirectory() as tmp:
    for fourcc, suffix, mime in CODECS:
      path = os.path.join(tmp, "probe" + suffix)
      writer = _open_writer(path, fourcc, 12.0, (64, 48))
      if writer is None:
        continue
      for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
      writer.release()
      if os.path.getsize(path) > 0:
        return fourcc, suffix, mime
  return None


def pad_even(image: np.ndarray) -> np.ndarray:
  """The image with its last row / column repeated where a side is odd (4:2:0 video needs even
  sides; padding keeps every source pixel, where cropping would drop one)."""
  h, w = image.shape[:2]
  if h % 2 == 0 and w % 2 == 0:
    return image
  return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


def fit_width(image: np.ndarray, width: int, even: bool = False, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
  """Downscales an image to `width` pixels (never upscales); `even`: both sides even (yuv420).
  INTER_NEAREST for id masks."""
  h, w = image.shape[:2]
  scale = min(1.0, width / w)
  nw, nh = max(int(round(w * scale)), 2), max(int(round(h * scale)), 2)
  if even:
    nw, nh = nw - nw % 2, nh - nh % 2
  if (nw, nh) == (w, h):
    return image
  return cv2.resize(image, (nw, nh), interpolation=interpolation)


class SmallVideo:
  """Writes RGB frames, downscaled to `width`, as a browser-playable video at path_stem + suffix.

  `width` None: the frames' own size (an odd side padded by one pixel, `pad_even`).
  `path` and `mime` are None when no browser codec is available (frames are then dropped).
  """

  def __init__(self, path_stem: str, width: Optional[int], fps: float):
    codec = browser_codec()
    self.width, self.fps = width, fps
    self.fourcc, self.path, self.mime = (codec[0], path_stem + codec[1], codec[2]) if codec else (None, None, None)
    self._writer = None
    self.frames = 0

  def write(self, rgb: np.ndarray) -> None:
    if self.path is None:
      return
    small = pad_even(rgb) if self.width is None else fit_width(rgb, self.width, even=True)
    if self._writer is None:
      self._writer = _open_writer(self.path, self.fourcc, self.fps, (small.shape[1], small.shape[0]))
      if self._writer is None:
        raise RuntimeError(f"{self.path}: OpenCV could not open the {self.fourcc} encoder it probed earlier")
    self._writer.write(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    self.frames += 1

  def close(self) -> None:
    if self._writer is not None:
      self._writer.release()
      self._writer = None


def write_jpeg(path: str, rgb: np.ndarray, width: int, quality: int) -> None:
  """A downscaled JPEG thumbnail of an RGB image."""
  small = fit_width(rgb, width)
  if not cv2.imwrite(path, cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
    raise RuntimeError(f"{path}: OpenCV could not write the thumbnail")
