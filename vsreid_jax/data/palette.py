"""Indexed (palette) PNG masks as DAVIS reads and writes them.

A mask is a uint8 array [H, W] whose value is the object id (0 is background). On disk it is a
mode "P" PNG carrying the DAVIS palette (the PASCAL VOC colour map), which the official DAVIS
tools read with `np.array(Image.open(path))`.
"""
import os
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from vsreid_jax.errors import InputError

JPEG_EXTS = (".jpg", ".jpeg")
VOID_ID = 255  # DAVIS: pixels of unknown label (object borders); never an object

# More distinct ids than this in one mask means an anti-aliased or grey-level image, not ids.
MAX_DISTINCT_IDS = 64


def davis_palette() -> np.ndarray:
  """The DAVIS / PASCAL VOC colour map as a [256, 3] uint8 array."""
  palette = np.zeros((256, 3), np.uint8)
  for i in range(256):
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    palette[i] = (r, g, b)
  return palette


PALETTE = davis_palette()


def write_mask(path, mask: np.ndarray) -> None:
  """Writes an id mask [H, W] (values 0..255) as a palette PNG with the DAVIS colours."""
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"mask for {path} must be 2-D, got shape {mask.shape}")
  if mask.size and (mask.min() < 0 or mask.max() > 255):
    raise ValueError(f"mask for {path} has ids outside 0..255")
  im = Image.fromarray(mask.astype(np.uint8), mode="P")
  im.putpalette(PALETTE.reshape(-1).tolist())
  im.save(os.fspath(path))


def rgb_to_ids(rgb: np.ndarray, path="<array>") -> np.ndarray:
  """Maps an RGB colour mask drawn with the DAVIS palette to ids; unknown colours are an error."""
  key = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
  pal_key = (PALETTE[:, 0].astype(np.int64) << 16) | (PALETTE[:, 1].astype(np.int64) << 8) | PALETTE[:, 2]
  lookup = {int(k): i for i, k in reversed(list(enumerate(pal_key)))}
  colours, inverse = np.unique(key, return_inverse=True)
  ids = []
  for c in colours:
    if int(c) not in lookup:
      raise InputError(
          f"{path}: colour #{int(c):06x} is not a DAVIS palette colour, so it cannot be mapped to an "
          "object id; repaint the mask with palette colours or save it as an indexed PNG")
    ids.append(lookup[int(c)])
  return np.asarray(ids, np.uint8)[inverse.reshape(key.shape)]


def read_mask(path) -> np.ndarray:
  """Reads an id mask. Accepts palette ("P") and 8-bit grey ("L") PNGs whose values are ids.

  Raises InputError naming the file for: a missing/unreadable file, an RGB image (colour, not
  ids), ids above 255 (16-bit PNGs) and anti-aliased masks (too many distinct values).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f"{path}: mask file not found")
  if path.lower().endswith(JPEG_EXTS):
    raise InputError(f"{path}: JPEG masks are refused: JPEG compression blurs object edges into values that "
                     "are not ids; save the mask as a PNG (indexed, or grey with 0 background)")
  try:
    im = Image.open(path)
    im.load()
  except Exception as e:  # PIL raises many types for corrupt files.
    raise InputError(f"{path}: cannot read mask image ({e.__class__.__name__}); is it a valid PNG?") from None
  if im.format == "JPEG":
    raise InputError(f"{path}: is a JPEG image; JPEG compression blurs object edges into values that are not "
                     "ids; save the mask as a PNG (indexed, or grey with 0 background)")
  if im.mode in ("RGB", "RGBA"):
    raise InputError(
        f"{path}: is an {im.mode} colour image, but masks must be indexed PNGs whose pixel values are object "
        f"ids; convert it with `vsreid convert-mask {path} OUT.png` (maps DAVIS palette colours to ids)")
  if im.mode not in ("P", "L", "I", "I;16", "1"):
    raise InputError(f"{path}: unsupported PNG mode {im.mode!r}; save the mask as an indexed (palette) PNG")
  arr = np.array(im)
  if arr.dtype == bool:
    arr = arr.astype(np.uint8)
  if arr.ndim != 2:
    raise InputError(f"{path}: mask must be a single-channel image, got shape {arr.shape}")
  if arr.size and arr.max() > 255:
    raise InputError(f"{path}: has object id {int(arr.max())} > 255; DAVIS masks hold ids 0..255, "
                     "renumber the objects to 1..K")
  arr = arr.astype(np.uint8)
  n_ids = int(np.count_nonzero(np.bincount(arr.ravel(), minlength=256)))  # much faster than np.unique
  if n_ids > MAX_DISTINCT_IDS:
    raise InputError(
        f"{path}: has {n_ids} distinct values, which looks like an anti-aliased or grey-level image, not "
        "object ids; re-save it with nearest-neighbour resampling, or threshold it "
        "(e.g. `(np.array(img) > 127).astype(np.uint8)` for one object)")
  return arr


def read_prompt_mask(path, size: Optional[Tuple[int, int]] = None, resize: bool = False
                     ) -> Tuple[np.ndarray, List[str]]:
  """Reads a user's prompt mask: `read_mask`, plus what users of other tools hand in.

  - A grey ("L"/"1") mask holding only 0 and 255 is one object drawn in white (id 1): in a
    palette PNG, 255 is DAVIS's void label instead.
  - With `size` = (height, width) of the frames, a mask of another size is an error naming both
    sizes, or, with `resize`, is resized by nearest neighbour (ids are never blended).

  Args:
    path: the PNG file.
    size: (height, width) the mask must have; None: not checked.
    resize: resize a mask of the wrong size instead of refusing it.
  Returns:
    (id mask uint8 [H, W], notes): notes are one-line messages for the user about what was done.
  """
  path = os.fspath(path)
  mask = read_mask(path)
  notes = []
  with Image.open(path) as im:
    mode = im.mode
  values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
  if mode in ("L", "1") and set(values.tolist()) == {0, 255}:
    mask = (mask == 255).astype(np.uint8)
    notes.append(f"{path}: a 0/255 mask; read as one object with id 1")
  if size is not None and mask.shape != tuple(size):
    h, w = size
    if not resize:
      raise InputError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {w}x{h}; pass "
                       "--resize-mask to resize it by nearest neighbour, or resize it yourself")
    notes.append(f"{path}: mask resized from {mask.shape[1]}x{mask.shape[0]} to {w}x{h} (nearest neighbour)")
    mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
  return mask, notes
