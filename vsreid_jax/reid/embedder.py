"""Runtime ReID for Algorithm 2: boxes in frames -> L2-normalised embeddings, one jitted function.

  emb = Embedder.from_weights()                    # the shipped reid_lite_cpu weights
  e = emb.embed(images[B, H, W, 3] uint8, boxes[B, M, 4] float32 pixels)   # [B, M, D]
  similar = e[0] @ template > emb.rho_reid         # cosine similarity (unit vectors)

The boxes are cropped inside the jitted function (grown by the config's margin, bilinear S x S,
as in training), and M is padded up to a bucket of `config.box_buckets`, so a frame with a new
number of candidates does not recompile.
"""
import functools

import jax
import numpy as np

from vsreid_jax.errors import InputError
from vsreid_jax import configs
from vsreid_jax.models import weights as weights_lib
from vsreid_jax.geometry import MIN_BOX_SIDE
from vsreid_jax.reid import model as model_lib

DEFAULT_REID_WEIGHTS = weights_lib.DEFAULT_REID_WEIGHTS
# Padding candidates: a small valid box (its embedding is computed and dropped).
PAD_BOX = np.array([0.0, 0.0, MIN_BOX_SIDE, MIN_BOX_SIDE], np.float32)


class Embedder:
  """Embeds boxes of frames with a ReID net; `rho_reid`, `rho_occ` come from the config."""

  def __init__(self, config, variables, config_name: str = ""):
    self.config = config
    self.config_name = config_name or config.get("name", "")
    self.model = model_lib.build_model(config.model)
    self.variables = jax.device_put(variables)
    self.rho_reid = float(config.rho_reid)
    self.rho_occ = float(config.rho_occ)
    self.embed_dim = int(config.model.embed_dim)
    self.buckets = tuple(sorted(config.box_buckets))
    size, margin, model = config.crop_size, config.crop_margin, self.model

    @jax.jit
    def jitted(variables, images, boxes):
      b, m = boxes.shape[:2]
      crops = jax.vmap(lambda im, bx: model_lib.crop_boxes(im, bx, size, margin))(images, boxes)
      e = model.apply(variables, crops.reshape((b * m,) + crops.shape[2:]), train=False)
      return e.reshape(b, m, -1)

    self.jitted = jitted

  @classmethod
  def from_weights(cls, path=DEFAULT_REID_WEIGHTS) -> "Embedder":
    """The ReID net of a weights file; InputError when it is not ReID weights or does not fit the
    model its config builds."""
    w = weights_lib.load_net_weights(path, "reid")
    try:
      config = w.config or configs.get("reid", w.name)
    except InputError as e:
      raise InputError(f"{w.path}: weights name an unknown ReID config: {e}") from None
    init = functools.partial(model_lib.build_model(config.model).init, train=False)
    weights_lib.check_variables(w.path, w.variables, jax.eval_shape(
        init, jax.random.key(0), model_lib.dummy_crops(config.crop_size)), w.name)
    return cls(config, w.variables, w.name)

  def bucket(self, m: int) -> int:
    """Smallest bucket >= m; beyond the largest, a multiple of it."""
    for b in self.buckets:
      if m <= b:
        return b
    top = self.buckets[-1]
    return -(-m // top) * top

  def embed(self, images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """images uint8 [B, H, W, 3] RGB, boxes [B, M, 4] (x0, y0, x1, y1 pixels) -> float32 [B, M, D]."""
    images = np.asarray(images)
    boxes = np.asarray(boxes, np.float32)
    if images.ndim != 4 or boxes.ndim != 3 or boxes.shape[0] != images.shape[0] or boxes.shape[2] != 4:
      raise ValueError(f"expected images [B, H, W, 3] and boxes [B, M, 4], got {images.shape} and {boxes.shape}")
    b, m = boxes.shape[:2]
    if m == 0:
      return np.zeros((b, 0, self.embed_dim), np.float32)
    padded = np.broadcast_to(PAD_BOX, (b, self.bucket(m), 4)).copy()
    padded[:, :m] = boxes
    return np.asarray(self.jitted(self.variables, images, padded))[:, :m]
