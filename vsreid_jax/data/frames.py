"""Frame sources: a folder of images or a video file, read lazily (streamed, never all loaded).

Every source is a sequence of RGB uint8 frames [H, W, 3] with a name per frame (the file stem,
or a zero-padded index for videos) so that results can be written as `<name>.png`.
"""
import collections
import contextlib
import copy
import os
import sys
import re
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from vsreid_jax.errors import InputError

# Decoded frames kept per source: flow, the net and the overlay all read frame i and i-1.
RECENT_FRAMES = 4

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
_SAME_TYPE = {".jpeg": ".jpg"}  # extensions of one image type
# A folder holding several image types is resolved by the most common one only when it has more
# than this many times as many files as all the others together (10 frames and a stray mask:
# yes; 5 .jpg and 5 .png: ambiguous, refused).
STRAY_MAJORITY = 2


def read_image(path) -> np.ndarray:
  """Reads one frame as RGB uint8; a missing or unreadable file is an InputError naming it."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f"{path}: frame file not found")
  bgr = cv2.imread(path, cv2.IMREAD_COLOR)
  if bgr is None:
    raise InputError(f"{path}: cannot decode frame image (corrupt or not an image); re-export the frame")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@contextlib.contextmanager
def quiet_native_stderr():
  """Silences what native code (FFmpeg inside OpenCV) writes to file descriptor 2, e.g. "moov atom
  not found" for a broken video: our own one-line error says it, once."""
  try:
    fd = sys.stderr.fileno()
  except (AttributeError, ValueError, OSError):  # stderr replaced (tests, notebooks): nothing to silence
    yield
    return
  sys.stderr.flush()
  saved = os.dup(fd)
  try:
    with open(os.devnull, "w") as devnull:
      os.dup2(devnull.fileno(), fd)
    yield
  finally:
    os.dup2(saved, fd)
    os.close(saved)


def remember(recent: collections.OrderedDict, i: int, image: np.ndarray) -> None:
  """Keeps the last RECENT_FRAMES decoded frames (read-only, so callers cannot alter the cache)."""
  image.setflags(write=False)
  recent[i] = image
  while len(recent) > RECENT_FRAMES:
    recent.popitem(last=False)


def natural_key(name: str):
  """Sort key of file names with numbers in numeric order: 1, 2, 10 (not 1, 10, 2)."""
  parts = re.split(r"(\d+)", name)
  return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], name


def _image_type(filename: str) -> str:
  ext = os.path.splitext(filename)[1].lower()
  return _SAME_TYPE.get(ext, ext)


def frame_files(folder: str) -> Tuple[List[str], Optional[str]]:
  """The frame image files of a folder in natural order, and a note on the files left out (or None).

  Hidden files are skipped. Images of several types (a mask `00000.png` beside `.jpg` frames)
  are resolved by the clearly most common type, noted; refused when no type clearly dominates.
  Two frames with one name (`a.jpg`, `a.JPG`) are refused: results are written as <name>.png.
  """
  files = [f for f in os.listdir(folder) if not f.startswith(".") and f.lower().endswith(IMAGE_EXTS)
           and os.path.isfile(os.path.join(folder, f))]
  if not files:
    raise InputError(f"{folder}: no frame images ({', '.join(IMAGE_EXTS)}) in this folder")
  counts = collections.Counter(_image_type(f) for f in files).most_common()
  note = None
  if len(counts) > 1:
    (top, n_top), others = counts[0], len(files) - counts[0][1]
    what = ", ".join(f"{n} {ext}" for ext, n in counts)
    if n_top <= STRAY_MAJORITY * others:
      raise InputError(f"{folder}: holds images of several types ({what}), so frames cannot be told from other "
                       "images; keep only the frames in this folder (move masks and other images out)")
    left_out = sorted((f for f in files if _image_type(f) != top), key=natural_key)
    files = [f for f in files if _image_type(f) == top]
    note = (f"{folder}: using the {n_top} {top} images as frames; ignoring {others} other image(s) "
            f"({', '.join(left_out[:3])}{', ...' if others > 3 else ''})")
  files.sort(key=natural_key)
  stems = collections.defaultdict(list)
  for f in files:
    stems[os.path.splitext(f)[0]].append(f)
  for stem, same in stems.items():
    if len(same) > 1:
      raise InputError(f"{folder}: {' and '.join(same)} share the name {stem!r}, but results are written as "
                       f"<name>.png; rename or remove one")
  return files, note


class FolderFrames(Sequence):
  """Frames stored as image files in one folder, in natural name order (`frame_files`); `note`
  says which other images were left out (None when none)."""

  def __init__(self, folder, names: List[str] = None):
    self.folder = os.fspath(folder)
    self.note = None
    if not os.path.isdir(self.folder):
      raise InputError(f"{self.folder}: frame folder not found")
    if names is None:
      self._files, self.note = frame_files(self.folder)
    else:
      self._files = list(names)
    self.names = [os.path.splitext(f)[0] for f in self._files]
    self._size = None
    self._recent = collections.OrderedDict()

  def __len__(self):
    return len(self._files)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    i = range(len(self))[i]
    if i in self._recent:
      return self._recent[i]
    path = os.path.join(self.folder, self._files[i])
    image = read_image(path)
    if self._size is None:
      self._size = image.shape[:2]
    elif image.shape[:2] != tuple(self._size):
      raise InputError(f"{path}: frame is {image.shape[1]}x{image.shape[0]} but earlier frames are "
                       f"{self._size[1]}x{self._size[0]}; all frames of a video must share one size")
    remember(self._recent, i, image)
    return image

  def path(self, i) -> str:
    return os.path.join(self.folder, self._files[i])

  def reopen(self) -> "FolderFrames":
    """The same frames with a recent-frame cache of their own, for another thread (flow/prefetch.py)."""
    other = copy.copy(self)
    other._recent = collections.OrderedDict()
    return other

  @property
  def size(self):
    """(height, width) of the first frame; every frame must share it."""
    if self._size is None:
      self._size = self[0].shape[:2]
    return self._size


class VideoFrames(Sequence):
  """Frames of a video file decoded with OpenCV; sequential reads stream, random reads seek."""

  def __init__(self, path):
    self.path_ = os.fspath(path)
    if not os.path.isfile(self.path_):
      raise InputError(f"{self.path_}: video file not found")
    with quiet_native_stderr():
      cap = cv2.VideoCapture(self.path_)
    if not cap.isOpened():
      raise InputError(f"{self.path_}: cannot open video (unsupported codec?); extract frames with ffmpeg "
                       "into a folder and pass the folder instead")
    # Frame count and rate from the container, without decoding the whole file. Some containers
    # report no count (0 or negative): only those are counted by decoding once.
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if n <= 0:
      n = 0
      with quiet_native_stderr():
        while cap.grab():
          n += 1
    cap.release()
    if n == 0:
      raise InputError(f"{self.path_}: video has no decodable frames")
    self._n = n
    self.names = [f"{i:05d}" for i in range(n)]
    self._cap = None
    self._next = 0
    self._size = None
    self._recent = collections.OrderedDict()

  def __len__(self):
    return self._n

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    if i < 0:
      i += self._n
    if not 0 <= i < self._n:
      raise IndexError(i)
    if i in self._recent:
      return self._recent[i]
    if self._cap is None or i != self._next:
      if self._cap is None:
        self._cap = cv2.VideoCapture(self.path_)
      self._cap.set(cv2.CAP_PROP_POS_FRAMES, i)
    ok, bgr = self._cap.read()
    if not ok:
      raise InputError(f"{self.path_}: cannot decode frame {i}; the video may be truncated")
    self._next = i + 1
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    remember(self._recent, i, image)
    return image

  def reopen(self) -> "VideoFrames":
    """The same frames with a decoder and recent-frame cache of their own, for another thread."""
    other = copy.copy(self)
    other._cap, other._next, other._recent = None, 0, collections.OrderedDict()
    return other

  @property
  def size(self):
    if self._size is None:
      self._size = self[0].shape[:2]
    return self._size


class ArrayFrames(Sequence):
  """Frames already in memory, [T, H, W, 3] uint8 RGB (notebooks, tests, generated clips)."""

  def __init__(self, frames: np.ndarray, names: List[str] = None):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"frames must be [T, H, W, 3], got shape {frames.shape}")
    self._frames = frames
    self.names = list(names) if names is not None else [f"{i:05d}" for i in range(len(frames))]
    self.size = frames.shape[1:3]

  def __len__(self):
    return len(self._frames)

  def __getitem__(self, i):
    return self._frames[i]

  def reopen(self) -> "ArrayFrames":
    """Itself: frames in memory hold no reading state, so threads may share them."""
    return self


def open_frames(path):
  """A folder of images or a video file, chosen by what `path` is; arrays are wrapped as they are."""
  if isinstance(path, np.ndarray):
    return ArrayFrames(path)
  path = os.fspath(path)
  if os.path.isdir(path):
    return FolderFrames(path)
  if os.path.isfile(path):
    if path.lower().endswith(VIDEO_EXTS):
      return VideoFrames(path)
    raise InputError(f"{path}: not a frame folder or a video ({', '.join(VIDEO_EXTS)})")
  raise InputError(f"{path}: no such frame folder or video file")


def resize_ids(ids: np.ndarray, size) -> np.ndarray:
  """An id mask [H, W] resized to size (height, width) by nearest neighbour (ids stay ids)."""
  h, w = size
  if ids.shape[:2] == (h, w):
    return ids
  return cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)


class ResizedFrames(Sequence):
  """Another source's frames shrunk (area interpolation) so that the long side is at most
  `max_size` pixels (`vsreid segment --max-size`); `input_size` is the source's (height, width)."""

  def __init__(self, frames, max_size: int):
    if max_size <= 0:
      raise ValueError(f"max_size must be positive, got {max_size}")
    self.frames = frames
    self.names = frames.names
    self.input_size = tuple(frames.size)
    h, w = self.input_size
    scale = min(1.0, max_size / max(h, w))
    self.size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    self._recent = collections.OrderedDict()

  def __len__(self):
    return len(self.frames)

  def __getitem__(self, i):
    i = range(len(self))[i]
    if i not in self._recent:
      h, w = self.size
      image = self.frames[i]
      remember(self._recent, i, image if (h, w) == self.input_size else
               cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
    return self._recent[i]

  def reopen(self) -> "ResizedFrames":
    """The same frames, source reopened, with a recent-frame cache of their own, for another thread."""
    other = copy.copy(self)
    other.frames = self.frames.reopen()
    other._recent = collections.OrderedDict()
    return other
