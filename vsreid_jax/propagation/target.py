"""A test-time target model beside N_mp (FRTM style, lever 3 of issue 17): first-frame appearance.

The warped prior tells N_mp where the object was, not what it looks like, so drift onto background
and similar-looking objects is never corrected. Here a small discriminative model is fitted, per
video and per object, on the crop of the frame where the object is given: an L2-regularised
logistic regression on frozen per-pixel features (object pixels against the crop's background,
both classes weighted equally), solved by a fixed number of Newton steps. On every later crop its
logits are fused with N_mp's before paste-back:

  fusion "sum":      logit = logit_N_mp + weight * clip(logit_target)
  fusion "suppress": logit = logit_N_mp + weight * min(clip(logit_target), 0)

With balanced classes the target logit is a log likelihood ratio, so "sum" is the naive-Bayes
combination of the two; "suppress" only removes foreground the target model calls background (the
leakage the error breakdown blames).

Features ("color" needs no net; "backbone" needs a learned N_mp):
- "color": random Fourier features (a fixed random projection, seed in the config) of the pixel's
  RGB and its local means over boxes of `blur` pixels: a smooth kernel classifier in colour space,
  at full crop resolution.
- "backbone": N_mp's own RGB-stream ResNet features (layers of `layers`, resized to stride 4) of the
  crop with the prior channel set to 0, so they carry appearance only, not the prior.

The fit's crop may be wider than the propagation scale's (`fit_margin`: one box width each side by
default), so the model also learns the background the object will move over. A per-object gate
(`gate_low`/`gate_high`, off by default) scales each object's fusion weight by how well its fit
separates its own crop (`separation`, balanced accuracy).

Optionally (`update_every` > 0, off by default: val gave +1.3 at every frame, within noise) a
second parameter set is refitted every few frames on the fused result's confident pixels and its
logits are averaged with the first frame's, which stay as the anchor.

Every function is jitted with fixed shapes: fitting compiles once per (object bucket, crop size),
fusing once per (objects x scales, crop size); new videos only swap the fitted parameters. Each
crop's features are computed one crop at a time (lax.map), so memory does not grow with objects.
"""
import contextlib
import dataclasses
import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vsreid_jax.errors import InputError
from vsreid_jax.models.propagation import build_backbone, resize_bilinear

FEATURES = ("off", "color", "backbone")
# The segment config's default: "color" with a learned N_mp, "off" with the identity net (the
# warp-only baseline stays warp only).
AUTO = "auto"
FUSIONS = ("sum", "suppress")


@dataclasses.dataclass(frozen=True)
class TargetConfig:
  """Numbers and their reasons: configs/segment.py (`propagation.target`)."""
  features: str = "off"
  fusion: str = "sum"
  weight: float = 1.0
  l2: float = 1e-3
  newton_steps: int = 8
  logit_clip: float = 6.0
  rff_dim: int = 64
  rff_sigma: float = 0.2
  blur: Tuple[int, ...] = (9,)
  layers: Tuple[str, ...] = ("layer1", "layer2", "layer3")
  seed: int = 0
  update_every: int = 0
  update_margin: float = 2.0
  update_min_fraction: float = 0.01
  gate_low: float = 0.0
  gate_high: float = 0.0
  fit_margin: float = 0.0


def box_mean(x: jnp.ndarray, size: int) -> jnp.ndarray:
  """Mean of x[N,H,W,C] over a size x size box around each pixel (the box cut at the border)."""
  r = size // 2
  win, pad = (1, size, size, 1), ((0, 0), (r, r), (r, r), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, win, (1, 1, 1, 1), pad)
  # Pixels inside the cut box, from the static shape on the host (XLA would constant-fold a window sum).
  h, w = x.shape[1:3]
  rows = np.minimum(np.arange(h) + r, h - 1) - np.maximum(np.arange(h) - r, 0) + 1
  cols = np.minimum(np.arange(w) + r, w - 1) - np.maximum(np.arange(w) - r, 0) + 1
  return total / jnp.asarray((rows[:, None] * cols[None, :])[None, :, :, None], x.dtype)


def color_features(image: jnp.ndarray, proj: jnp.ndarray, phase: jnp.ndarray, blur: Tuple[int, ...]):
  """Random Fourier features of colour: image[N,S,S,3] (0..255) -> [N,S,S,D].

  proj[3 * (1 + len(blur)), D] and phase[D]: the fixed random projection."""
  x = image / 255.0
  z = jnp.concatenate([x] + [box_mean(x, b) for b in blur], axis=-1)
  return jnp.cos(z @ proj + phase) * jnp.sqrt(2.0 / proj.shape[1])


def fit_logistic(feats: jnp.ndarray, labels: jnp.ndarray, l2: float, steps: int, weights=None):
  """Balanced L2 logistic regression per object, by Newton steps.

  Args:
    feats: [N, h, w, D] features of the crop of each object.
    labels: [N, h, w] object probability (0..1) of each pixel.
    l2: ridge on the standardised weights (not the bias), per unit of total pixel weight.
    steps: Newton iterations (fixed: the loop compiles once).
    weights: [N, h, w] per-pixel weights (0: ignored); None: all 1.
  Returns:
    (mean [N, D], std [N, D], weights [N, D + 1]): standardisation and weights (bias last).
  """
  n, h, w, d = feats.shape
  x = feats.reshape(n, h * w, d)
  y = labels.reshape(n, h * w)
  c = jnp.ones_like(y) if weights is None else weights.reshape(n, h * w)
  mean = x.mean(axis=1)
  std = x.std(axis=1) + 1e-6
  x = (x - mean[:, None]) / std[:, None]
  x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
  # Each class weighs 1/2 in total, so the logit is a log likelihood ratio (no class prior).
  pos = jnp.maximum((c * y).sum(axis=1, keepdims=True), 1.0)
  neg = jnp.maximum((c * (1.0 - y)).sum(axis=1, keepdims=True), 1.0)
  s = 0.5 * c * (y / pos + (1.0 - y) / neg)
  reg = l2 * jnp.concatenate([jnp.ones(d), jnp.zeros(1)])

  def newton(_, wts):
    p = jax.nn.sigmoid(jnp.einsum("npd,nd->np", x, wts))
    grad = jnp.einsum("npd,np->nd", x, s * (p - y)) + reg * wts
    hess = jnp.einsum("npd,np,npe->nde", x, s * p * (1 - p), x) + jnp.diag(reg + 1e-6)
    return wts - jnp.linalg.solve(hess, grad[..., None])[..., 0]

  wts = jax.lax.fori_loop(0, steps, newton, jnp.zeros((n, d + 1), x.dtype))
  return mean, std, wts


def separation(params, feats: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """How well fitted params separate their own training crop: balanced accuracy [N] in 0..1.

  feats[N, h, w, D], labels[N, h, w] (object probability): the mean of the object pixels'
  accuracy and the background pixels' accuracy at logit 0 (0.5: chance, 1: perfect)."""
  z = score(params, feats).reshape(feats.shape[0], -1)
  y = labels.reshape(z.shape)
  hit = (z > 0).astype(z.dtype)
  pos = (y * hit).sum(1) / jnp.maximum(y.sum(1), 1.0)
  neg = ((1.0 - y) * (1.0 - hit)).sum(1) / jnp.maximum((1.0 - y).sum(1), 1.0)
  return 0.5 * (pos + neg)


def gate(quality: jnp.ndarray, low: float, high: float) -> jnp.ndarray:
  """Per-object fusion weight factor from the first-frame separation: 0 at or below `low`, 1 at
  or above `high`, linear between; high <= low: no gate (1 for every object)."""
  if high <= low:
    return jnp.ones_like(quality)
  return jnp.clip((quality - low) / (high - low), 0.0, 1.0)


def score(params, feats: jnp.ndarray) -> jnp.ndarray:
  """Target logits [N, h, w] of features [N, h, w, D] with fitted params [Kb, ...]; N is a multiple
  of Kb (scales of one crop size batched object-major per scale), params repeat per group."""
  mean, std, wts = params
  reps = feats.shape[0] // mean.shape[0]
  mean, std, wts = (jnp.tile(a, (reps, 1)) for a in (mean, std, wts))
  x = (feats - mean[:, None, None]) / std[:, None, None]
  return jnp.einsum("nhwd,nd->nhw", x, wts[:, :-1]) + wts[:, None, None, -1]


def features(aux, image, config: TargetConfig, backbone=None, norm=None) -> jnp.ndarray:
  """Per-pixel features [N, h, w, D] of crops image[N, S, S, 3] (0..255).

  aux: (projection, phase) for "color"; N_mp's variables for "backbone", with `backbone` its RGB
  stream's ResNet module and `norm` the net's (rgb_mean, rgb_std)."""
  if config.features == "color":
    return color_features(image, aux[0], aux[1], tuple(config.blur))
  rgb = (image - jnp.asarray(norm[0])) / jnp.asarray(norm[1])
  x = jnp.concatenate([rgb, jnp.zeros_like(rgb[..., :1])], axis=-1)  # the prior channel: 0
  sub = {k: v["rgb_stream"]["backbone"] for k, v in aux.items()}
  _, feats = backbone.apply(sub, x, train=False, return_features=True)
  h, w = feats[config.layers[0]].shape[1:3]
  return jnp.concatenate([resize_bilinear(feats[l].astype(jnp.float32), h, w) for l in config.layers], -1)


_STATIC = ("config", "backbone", "norm")


@functools.partial(jax.jit, static_argnames=_STATIC)
def fit_stage(aux, image, prob, *, config, backbone=None, norm=None):
  """Fitted params (fit_logistic) of crops image[Kb,S,S,3] with object probabilities prob[Kb,S,S,1],
  and each object's separation [Kb] of its own crop (`separation`). One crop at a time (lax.map):
  memory holds one crop's features, not every object's."""

  def one(args):
    img, p = args
    feats = features(aux, img[None], config, backbone, norm)
    labels = jax.image.resize(p[None, ..., 0], (1,) + feats.shape[1:3], "bilinear")
    params = fit_logistic(feats, labels, config.l2, config.newton_steps)
    return jax.tree.map(lambda a: a[0], (params, separation(params, feats, labels)))

  return jax.lax.map(one, (image, prob))


@functools.partial(jax.jit, static_argnames=_STATIC)
def score_stage(aux, params, image, *, config, backbone=None, norm=None):
  """The target model's clipped logits [N,S,S,1] on crops image[N,S,S,3], one crop at a time.
  params: a tuple of fitted parameter sets (the first frame's; with updates also the latest),
  their logits averaged."""
  reps = image.shape[0] // params[0][0].shape[0]  # scales of one crop size: params repeat per group
  tiled = tuple(tuple(jnp.tile(a, (reps, 1)) for a in p) for p in params)

  def one(args):
    img, sets = args
    feats = features(aux, img[None], config, backbone, norm)
    return sum(score(tuple(a[None] for a in p), feats)[0] for p in sets) / len(sets)

  s = jax.lax.map(one, (image, tiled))
  return jnp.clip(resize_bilinear(s[..., None], *image.shape[1:3]), -config.logit_clip, config.logit_clip)


@functools.partial(jax.jit, static_argnames=_STATIC)
def update_stage(aux, latest, image, logits, *, config, backbone=None, norm=None):
  """Refits on crops image[Kb,S,S,3] of a later frame, labelled by the fused logits[Kb,S,S,1] where
  they are confident (|logit| > update_margin); an object with fewer confident object pixels than
  update_min_fraction of its crop keeps its `latest` parameters."""

  def one(args):
    img, z, old = args
    feats = features(aux, img[None], config, backbone, norm)
    size = (1,) + feats.shape[1:3]
    labels = jax.image.resize((z[None, ..., 0] > 0).astype(jnp.float32), size, "bilinear")
    conf = jax.image.resize((jnp.abs(z[None, ..., 0]) > config.update_margin).astype(jnp.float32), size, "bilinear")
    new = jax.tree.map(lambda a: a[0], fit_logistic(feats, labels, config.l2, config.newton_steps, conf))
    enough = jnp.mean(conf * labels) >= config.update_min_fraction
    return jax.tree.map(lambda a, b: jnp.where(enough, a, b), new, old)

  return jax.lax.map(one, (image, logits, latest))


@functools.partial(jax.jit, static_argnames=_STATIC)
def fuse_stage(aux, params, gates, image, logits, *, config, backbone=None, norm=None):
  """N_mp logits[N,S,S,1] fused with the target logits of crops image[N,S,S,3] (module docstring),
  each object's weighted by its gate gates[Kb] (repeated per group of Kb crops)."""
  s = score_stage(aux, params, image, config=config, backbone=backbone, norm=norm)
  if config.fusion == "suppress":
    s = jnp.minimum(s, 0.0)
  g = jnp.tile(gates, image.shape[0] // gates.shape[0])[:, None, None, None]
  return logits + config.weight * g * s


class TargetModel:
  """Fits per-object target models on the given frame's crops; fuses their logits with N_mp's.

  `fit(image_crops, prob_crops)` sets the current video's parameters; `fuse(image_crops, logits)`
  returns the fused logits. The jitted stages are module functions with the config static, so
  every Segmenter of one config shares their compilations.
  """

  def __init__(self, config: TargetConfig, net=None):
    if config.features not in FEATURES[1:]:
      raise InputError(f"propagation.target_model {config.features!r}: choose one of {', '.join(FEATURES + (AUTO,))}")
    if config.fusion not in FUSIONS:
      raise InputError(f"propagation.target.fusion {config.fusion!r}: choose one of {', '.join(FUSIONS)}")
    self.config = config
    self.params = None
    self.quality = self.gates = None  # set by fit
    self._static = dict(config=config)
    if config.features == "color":
      rng = np.random.RandomState(config.seed)
      proj = rng.standard_normal((3 * (1 + len(config.blur)), config.rff_dim)) / config.rff_sigma
      phase = rng.uniform(0, 2 * np.pi, config.rff_dim)
      aux = (jnp.asarray(proj, jnp.float32), jnp.asarray(phase, jnp.float32))  # on the device once
      self._aux = lambda: aux
    else:
      model = getattr(net, "model", None)
      if model is None:
        raise InputError("propagation.target_model backbone: needs a learned N_mp (not --net identity); "
                         "use propagation.target_model=color")
      self._static.update(backbone=build_backbone(net.model_config.model)(dtype=model.dtype),
                          norm=(tuple(model.rgb_mean), tuple(model.rgb_std)))
      self._aux = lambda: net.variables  # the video's (online-adapted) variables

  @property
  def jitted(self):
    return (fit_stage, fuse_stage, update_stage)

  def fit(self, image: jnp.ndarray, prob: jnp.ndarray) -> None:
    """image[Kb,S,S,3] (0..255) and prob[Kb,S,S,1] crops of the frame the objects are given on."""
    first, quality = jax.block_until_ready(fit_stage(self._aux(), image, prob, **self._static))
    self.quality = quality  # [Kb] balanced accuracy of each object's fit on its own crop
    self.gates = gate(quality, self.config.gate_low, self.config.gate_high)
    # With updates, a second set starts as the first frame's and follows confident later frames.
    self.params = (first, first) if self.config.update_every > 0 else (first,)
    self._fused = 0

  def fuse(self, image: jnp.ndarray, logits: jnp.ndarray) -> jnp.ndarray:
    """N_mp logits[N,S,S,1] of crops image[N,S,S,3] fused with the target logits; every
    `update_every` calls the latest parameter set is refitted on the first Kb crops' result."""
    out = fuse_stage(self._aux(), self.params, self.gates, image, logits, **self._static)
    every = self.config.update_every
    if every > 0:
      self._fused += 1
      if self._fused % every == 0:
        kb = self.params[0][0].shape[0]
        latest = update_stage(self._aux(), self.params[1], image[:kb], out[:kb], **self._static)
        self.params = (self.params[0], latest)
    return out

  @contextlib.contextmanager
  def only(self, index: int):
    """Within the block, the model holds object `index`'s parameters alone (fuse and score then
    take crops of that one object, as the solver's recovery and re-propagation run them); the
    video's parameters are restored after (an update refitted inside the block is dropped)."""
    saved, saved_gates = self.params, self.gates
    if saved is not None:
      self.params = tuple(tuple(a[index:index + 1] for a in p) for p in saved)
    if saved_gates is not None:
      self.gates = saved_gates[index:index + 1]  # the per-object gates follow their parameters
    try:
      yield self
    finally:
      self.params, self.gates = saved, saved_gates

  def score(self, image: jnp.ndarray) -> jnp.ndarray:
    """The target model's own logits [N,S,S,1] (clipped) on crops image[N,S,S,3]."""
    return score_stage(self._aux(), self.params, image, **self._static)


def build(config, net=None) -> Optional[TargetModel]:
  """The TargetModel a segment config asks for (`propagation.target_model`), None when "off"."""
  p = config.propagation
  name = p.get("target_model", "off")
  if name == AUTO:
    name = "color" if getattr(net, "model", None) is not None else "off"
  if name == "off":
    return None
  t = p.target
  return TargetModel(TargetConfig(features=name, fusion=t.fusion, weight=float(t.weight), l2=float(t.l2),
                                  newton_steps=int(t.newton_steps), logit_clip=float(t.logit_clip),
                                  rff_dim=int(t.rff_dim), rff_sigma=float(t.rff_sigma),
                                  blur=tuple(int(b) for b in t.blur), layers=tuple(t.layers), seed=int(t.seed),
                                  update_every=int(t.update_every), update_margin=float(t.update_margin),
                                  update_min_fraction=float(t.update_min_fraction),
                                  gate_low=float(t.get("gate_low", 0.0)), gate_high=float(t.get("gate_high", 0.0)),
                                  fit_margin=float(t.get("fit_margin", 0.0))),
                     net)
