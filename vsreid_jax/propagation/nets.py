"""Propagation nets N_mp: (image, flow, prob crops) -> logits; the learned one loads with
`PropagationNet.from_weights(path)` (its model module is models/propagation.py).

Every net takes image[N,S,S,3] (RGB, 0..255), flow[N,S,S,2] (crop pixels), prob[N,S,S,1] (0..1)
and returns logits[N,S,S,1]; sigmoid(logits) is the refined probability. N is the object count
padded to a bucket, S the crop size, so each net compiles once per (bucket, S).
"""
import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from vsreid_jax.errors import InputError
from vsreid_jax.models import weights
from vsreid_jax.models.propagation import build_model, dummy_inputs, make_propagation_fn

NetFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]

# Probabilities are clipped to [EPS, 1-EPS] before taking logits so that sigmoid(logit(p)) == p
# up to float error and no logit is infinite.
EPS = 1e-6


def _identity(image, flow, prob):
  del image, flow
  p = jnp.clip(prob, EPS, 1 - EPS)
  return jnp.log(p) - jnp.log1p(-p)


identity_net = jax.jit(_identity)
"""Warp-only baseline: returns the warped probability unchanged (as logits)."""


def with_flip_average(fn: NetFn) -> NetFn:
  """Test-time augmentation: averages logits with those of the horizontally flipped crops.

  Flipping mirrors x, so the flow's x component changes sign.
  """

  def flipped(image, flow, prob):
    flip = lambda a: a[:, :, ::-1, :]
    flow_f = flip(flow) * jnp.array([-1.0, 1.0], flow.dtype)
    return flip(fn(flip(image), flow_f, flip(prob)))

  return jax.jit(lambda image, flow, prob: 0.5 * (fn(image, flow, prob) + flipped(image, flow, prob)))


def net_scales(model_cfg) -> Tuple[Tuple[float, int], ...]:
  """The net's own test scales: (its margin, its crop size x f) for each f of `test_scales`, the crop
  rounded to the nearest (multiple of the output stride) + 1, like the training crop (161 = 10 x 16 + 1:
  0.8 -> 129, 1.2 -> 193)."""
  stride = int(model_cfg.model.backbone.output_stride)
  crop = int(model_cfg.crop_size)
  return tuple((float(model_cfg.crop_margin), int(round((crop - 1) * float(f) / stride)) * stride + 1)
               for f in model_cfg.get("test_scales", (1.0,)))


class PropagationNet:
  """A learned N_mp with its config and weights: `PropagationNet.from_weights(path)`.

  Owns `config` (the propagation model ConfigDict: crop size, margin, test-time settings), `model`
  (the Flax module) and `variables` (the loaded, base variables). The variables are an argument of
  one jitted function, so each video can run its own (online-adapted) variables without
  recompiling: `net.apply(variables, image, flow, prob)` with any variables of the same shapes,
  or `net.use(variables)` and then `net(image, flow, prob)`, the NetFn that Propagator calls
  (None: the base variables). `jitted(variables, image, flow, prob)` is the compiled function
  (flip-averaged when `flip`), what `utils.jit_cache_size` counts.
  """

  def __init__(self, model, variables, flip: bool, config_name: str, model_config):
    self.model, self.config_name, self.config = model, config_name, model_config
    base = make_propagation_fn(model, variables).jitted
    if flip:
      self.jitted = jax.jit(lambda v, image, flow, prob: with_flip_average(functools.partial(base, v))(image, flow, prob))
    else:
      self.jitted = base
    # On the device once (not with every call); uncommitted like the loaded numpy arrays.
    self.base_variables = jax.device_put(variables)
    self.variables, self._source = self.base_variables, None

  @property
  def model_config(self):
    """The same as `config` (the name api.py used)."""
    return self.config

  @property
  def scales(self) -> Tuple[Tuple[float, int], ...]:
    """The net's own test scales (`net_scales`)."""
    return net_scales(self.config)

  @classmethod
  def from_weights(cls, path=None, flip: Optional[bool] = None,
                   streams: Optional[Tuple[str, ...]] = None) -> "PropagationNet":
    """The N_mp of a weights file (None: the shipped one); InputError when it is not propagation
    weights, names an unknown config, or does not fit the model its config builds.

    Args:
      path: a weights file written by `models.weights.save_weights` (kind "propagation").
      flip: average with the horizontally flipped crops; None: the config's `test_flip`.
      streams: run only these of the net's streams, e.g. ("rgb",) for the single-stream ablation
        (the two-stream weights with the flow stream left out); None: every stream it was trained with.
    """
    path = weights.DEFAULT_WEIGHTS if path is None else path
    w = weights.load_net_weights(path, "propagation")
    try:
      model_cfg = w.config or weights.model_config(w.name)
    except InputError as e:
      raise InputError(f"{path}: {e}") from None
    # A single-stream net (e.g. trained with `vsreid train --stage rgb`) brings only its streams.
    trained = tuple(s for s in model_cfg.model.streams if f"{s}_stream" in w.variables.get("params", {}))
    if streams and not set(streams) <= set(trained):
      raise InputError(f"{path}: has no {' / '.join(sorted(set(streams) - set(trained)))} stream (it has "
                       f"{', '.join(trained)}); use a net trained with those streams")
    model_cfg.model.streams = trained
    init = functools.partial(build_model(model_cfg.model).init, train=False)
    weights.check_variables(path, w.variables, jax.eval_shape(init, jax.random.key(0),
                                                              *dummy_inputs(model_cfg.crop_size)), w.name)
    if streams:
      model_cfg.model.streams = tuple(streams)
    return cls(build_model(model_cfg.model), w.variables, model_cfg.test_flip if flip is None else flip,
               w.name, model_cfg)

  def apply(self, variables: Optional[dict], image, flow, prob):
    """Logits [N,S,S,1] of the crops with `variables` (None: the base variables)."""
    return self.jitted(self.base_variables if variables is None else variables, image, flow, prob)

  def use(self, variables: Optional[dict]) -> None:
    """Runs `__call__` with `variables` from now on; None: the base (loaded) variables."""
    if variables is not self._source:  # called every frame: transfer only on a change
      self._source = variables
      self.variables = self.base_variables if variables is None else jax.device_put(variables)

  def __call__(self, image, flow, prob):
    return self.jitted(self.variables, image, flow, prob)
