"""Generated clips in the DAVIS layout: textured objects moving and growing over a textured
background. Small and deterministic, for tests and smoke runs (DIS finds their motion)."""
import json
import os

import cv2
import numpy as np

from vsreid_jax.data.palette import write_mask


def _texture(rng, h, w, scale):
  """Smooth random colour texture (DIS needs texture to track)."""
  small = rng.uniform(0, 255, (max(h // scale, 2), max(w // scale, 2), 3)).astype(np.float32)
  return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def moving_shapes(n_frames=10, height=64, width=96, n_objects=2, seed=0, grow=1.04, speed=2.0):
  """Textured rectangles that move and grow over a textured background.

  Args:
    n_frames: T.
    height: H in pixels.
    width: W in pixels.
    n_objects: K rectangles, ids 1..K (later ones drawn over earlier ones).
    seed: draws the textures, sizes, places and velocities.
    grow: each side's scale factor per frame.
    speed: the largest velocity component in pixels per frame.

  Returns:
    (frames [T, H, W, 3] uint8 RGB, id masks [T, H, W] uint8).
  """
  rng = np.random.default_rng(seed)
  background = _texture(rng, height, width, 8)
  textures = [_texture(rng, height, width, 4) for _ in range(n_objects)]
  sizes = rng.uniform(0.15, 0.25, (n_objects, 2)) * [width, height]
  centres = rng.uniform(0.3, 0.7, (n_objects, 2)) * [width, height]
  velocity = rng.uniform(-1, 1, (n_objects, 2)) * speed
  frames, masks = [], []
  for t in range(n_frames):
    frame = background.copy()
    mask = np.zeros((height, width), np.uint8)
    for k in range(n_objects):
      cx, cy = centres[k] + velocity[k] * t
      sw, sh = sizes[k] * grow ** t
      x0, x1 = int(round(cx - sw / 2)), int(round(cx + sw / 2))
      y0, y1 = int(round(cy - sh / 2)), int(round(cy + sh / 2))
      x0, y0 = max(x0, 0), max(y0, 0)
      x1, y1 = min(x1, width), min(y1, height)
      if x1 <= x0 or y1 <= y0:
        continue
      # The object's texture moves with it: sample the texture in object coordinates.
      tex = np.roll(textures[k], (int(round(velocity[k][1] * t)), int(round(velocity[k][0] * t))), (0, 1))
      frame[y0:y1, x0:x1] = tex[y0:y1, x0:x1]
      mask[y0:y1, x0:x1] = k + 1
    frames.append(frame.astype(np.uint8))
    masks.append(mask)
  return np.stack(frames), np.stack(masks)


def write_davis_root(root, sequences, resolution="480p", subset="val"):
  """Writes {name: (frames, masks)} as a DAVIS-layout root with ImageSets/2017/<subset>.txt."""
  for name, (frames, masks) in sequences.items():
    img_dir = os.path.join(root, "JPEGImages", resolution, name)
    ann_dir = os.path.join(root, "Annotations", resolution, name)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    for t, (frame, mask) in enumerate(zip(frames, masks)):
      cv2.imwrite(os.path.join(img_dir, f"{t:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                  [cv2.IMWRITE_JPEG_QUALITY, 95])
      write_mask(os.path.join(ann_dir, f"{t:05d}.png"), mask)
  os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
  with open(os.path.join(root, "ImageSets", "2017", f"{subset}.txt"), "w") as f:
    f.write("\n".join(sequences) + "\n")
  return root


def write_youtube_vos_root(root, videos, step=5, every_frame=False):
  """Writes {name: (frames, masks)} as a YouTube-VOS split folder (data/youtube_vos.py): frames
  named like the sparse valid set (00000, 00005, ...: `step`), an annotation PNG only at each frame
  where objects first appear (holding only those objects), and meta.json listing each object's
  frames from its first appearance. `every_frame`: the train split's layout instead, a full mask
  PNG at every frame."""
  meta = {"videos": {}}
  for name, (frames, masks) in videos.items():
    img_dir = os.path.join(root, "JPEGImages", name)
    ann_dir = os.path.join(root, "Annotations", name)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    names = [f"{t * step:05d}" for t in range(len(frames))]
    objects = {}
    for t, (frame, mask) in enumerate(zip(frames, masks)):
      cv2.imwrite(os.path.join(img_dir, names[t] + ".jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                  [cv2.IMWRITE_JPEG_QUALITY, 95])
      new = [int(k) for k in np.unique(mask) if k and str(int(k)) not in objects]
      for k in new:
        objects[str(k)] = {"category": "shape", "frames": names[t:]}
      if every_frame:
        write_mask(os.path.join(ann_dir, names[t] + ".png"), mask.astype(np.uint8))
      elif new:
        write_mask(os.path.join(ann_dir, names[t] + ".png"), np.where(np.isin(mask, new), mask, 0).astype(np.uint8))
    meta["videos"][name] = {"objects": objects}
  with open(os.path.join(root, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
  return root


def leave_and_return(n_frames=12, height=64, width=96, seed=0, out=(4, 8), textured_background=True):
  """Two textured squares; object 2 slides out of the right border at frame out[0] and is back
  (entering from the right) from frame out[1]: what propagation alone cannot recover. Without a
  textured background the background is black (a test net can then tell object from background)."""
  rng = np.random.default_rng(seed)
  background = _texture(rng, height, width, 8) if textured_background else np.zeros((height, width, 3), np.float32)
  tex = [_texture(rng, 20, 20, 3), _texture(rng, 20, 20, 3)]
  frames, masks = [], []
  for t in range(n_frames):
    frame = background.copy()
    mask = np.zeros((height, width), np.uint8)
    positions = [(10 + t, 20)]  # object 1 drifts slowly
    if t < out[0]:
      x = width - 40 + 10 * t  # object 2 leaves to the right...
    elif t < out[1]:
      x = width + 5  # ...stays outside...
    else:
      x = width - 24 - 2 * (t - out[1])  # ...and comes back, moving left
    positions.append((x, 30))
    for k, (x0, y0) in enumerate(positions):
      xa, xb = max(x0, 0), min(x0 + 20, width)
      if xb > xa:
        frame[y0:y0 + 20, xa:xb] = tex[k][:, xa - x0:xb - x0]
        mask[y0:y0 + 20, xa:xb] = k + 1
    frames.append(frame.astype(np.uint8))
    masks.append(mask)
  return np.stack(frames), np.stack(masks)
