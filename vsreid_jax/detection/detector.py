"""The detector at inference: `Detector.from_weights(path).detect(images)`.

Frames of any size are resized (aspect kept, top-left aligned) into the config's single input
bucket, so one compiled function serves every frame of a given batch size; boxes come back in
input pixels.
"""
from typing import Dict, Tuple

import cv2
import jax
import numpy as np

from vsreid_jax import configs
from vsreid_jax.detection import model as det_model
from vsreid_jax.errors import InputError
from vsreid_jax.models import weights
from vsreid_jax.models.weights import DEFAULT_DETECTOR_WEIGHTS

class Detector:
  """Class-agnostic object boxes of RGB frames (Faster R-CNN FPN, fixed numbers of outputs)."""

  def __init__(self, config, variables, config_name: str = ""):
    self.config = config
    self.config_name = config_name or config.name
    self.variables = jax.device_put(variables)
    self.model = det_model.build_model(config)
    self.bucket = (config.input.height, config.input.width)
    model, bucket = self.model, self.bucket
    self.jitted = jax.jit(lambda v, x: det_model.forward(model, config, v, det_model.prepare(x, config), bucket))

  @classmethod
  def from_weights(cls, path=DEFAULT_DETECTOR_WEIGHTS) -> "Detector":
    """The detector of a weights file; InputError when it is not detector weights or does not fit
    the model its config builds."""
    w = weights.load_net_weights(path, "detector")
    try:
      config = w.config or configs.get("detector", w.name)
    except InputError as e:
      raise InputError(f"{w.path}: {e}") from None
    model = det_model.build_model(config)
    weights.check_variables(w.path, w.variables, jax.eval_shape(
        lambda: det_model.init_variables(model, config, jax.random.key(0))), w.name)
    return cls(config, w.variables, w.name)

  def outputs(self, images: np.ndarray) -> Dict[str, np.ndarray]:
    """Proposals and detections of one call (what `proposals` and `detect` return), boxes in
    input pixels: {proposals, proposal_scores, proposal_valid, boxes, scores, labels, valid}."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise InputError(f"images must be [B, H, W, 3] RGB, got shape {images.shape}")
    h, w = images.shape[1:3]
    bh, bw = self.bucket
    scale = min(bh / h, bw / w)
    nh, nw = min(int(round(h * scale)), bh), min(int(round(w * scale)), bw)
    batch = np.zeros((len(images), bh, bw, 3), np.uint8)
    for i, im in enumerate(images):
      batch[i, :nh, :nw] = im if (nh, nw) == (h, w) else cv2.resize(
          np.asarray(im, np.uint8), (nw, nh), interpolation=cv2.INTER_AREA)
    out = dict(jax.device_get(self.jitted(self.variables, batch)))
    sx, sy = w / nw, h / nh  # exact per-axis inverse of the rounded resize
    for k in ("boxes", "proposals"):
      out[k] = np.clip(out[k] * np.array([sx, sy, sx, sy], np.float32), 0, [w, h, w, h]).astype(np.float32)
    for k in ("scores", "proposal_scores"):
      out[k] = out[k].astype(np.float32)
    for k in ("valid", "proposal_valid"):
      out[k] = out[k].astype(bool)
    return out

  def detect(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [B, H, W, 3] RGB -> boxes float32 [B, M, 4] (x0, y0, x1, y1 in input pixels), scores
    float32 [B, M] in decreasing order, valid bool [B, M]; M = roi.detections_per_img."""
    out = self.outputs(images)
    return out["boxes"], out["scores"], out["valid"]

  def proposals(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RPN proposals after NMS: boxes [B, P, 4], objectness [B, P] decreasing, valid [B, P]."""
    out = self.outputs(images)
    return out["proposals"], out["proposal_scores"], out["proposal_valid"]
