"""The first-frame target model beside N_mp (propagation/target.py): it separates an object from its
background, removes a prior's leak onto background, is bit-identical when off, and never recompiles
per frame."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.api import Segmenter
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data import synthetic
from vsreid_jax.errors import InputError
from vsreid_jax.propagation.algorithm1 import PropagationConfig, Propagator
from vsreid_jax.propagation.nets import identity_net
from vsreid_jax.propagation.target import TargetConfig, TargetModel
from vsreid_jax.utils import jit_cache_size

H, W = 48, 64


def _scene(cx, cy, seed):
  """A textured two-colour object (red/yellow stripes) on a noisy green/blue background."""
  rng = np.random.default_rng(seed)
  img = np.zeros((H, W, 3), np.float32)
  img[:, : W // 2] = (40, 150, 60)
  img[:, W // 2:] = (50, 70, 170)
  yy, xx = np.mgrid[:H, :W]
  mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < 10 ** 2
  img[mask & (yy % 4 < 2)] = (200, 40, 30)
  img[mask & (yy % 4 >= 2)] = (220, 200, 40)
  img += rng.normal(0, 12, img.shape)
  return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.float32)


def _color_config(**kw):
  config = segment_config.get_config()
  config.net = "identity"
  config.propagation.scales = ((0.15, 41),)
  config.propagation.target_model = "color"
  for k, v in kw.items():
    setattr(config.propagation.target, k, v)
  return config


def test_target_model_fitted_on_frame0_scores_a_later_frame():
  model = TargetModel(TargetConfig(features="color"))
  img0, mask0 = _scene(20, 24, seed=0)
  img1, mask1 = _scene(40, 20, seed=1)  # moved into the other half of the background, new noise
  model.fit(jnp.asarray(img0[None], jnp.float32), jnp.asarray(mask0[None, :, :, None]))
  logits = np.asarray(model.score(jnp.asarray(img1[None], jnp.float32)))[0, :, :, 0]
  inside, outside = logits[mask1 > 0], logits[mask1 == 0]
  assert inside.mean() > 2.0 and outside.mean() < -2.0, (inside.mean(), outside.mean())
  accuracy = ((logits > 0) == (mask1 > 0)).mean()
  assert accuracy > 0.95, accuracy


def test_target_model_removes_a_leak_of_the_prior_onto_background():
  img, mask = _scene(22, 24, seed=2)
  leak = np.zeros_like(mask)
  # The prior spilled onto the blue background, as a confident N_mp output (p 0.9, logit 2.2) would;
  # the identity net's certain 0/1 (logit +-13.8) outweighs any clipped target logit.
  leak[5:15, 36:56] = 0.9
  prior = np.maximum(mask, leak)[None]
  flow = np.zeros((H, W, 2), np.float32)
  alive, area = jnp.array([True]), jnp.array([mask.sum()])
  outs = {}
  for name, target in (("off", None), ("color", TargetModel(TargetConfig(features="color")))):
    prop = Propagator(identity_net, PropagationConfig(scales=((0.15, 41),)), target)
    prop.fit_target(img, mask[None])
    outs[name] = np.asarray(prop.step(jnp.asarray(prior), img, flow, alive, area)[0])[0] > 0.5
  assert outs["off"][leak > 0].mean() > 0.95  # warping alone keeps the leak
  assert outs["color"][leak > 0].mean() < 0.05
  assert outs["color"][mask > 0].mean() > 0.95


def _segment(config, frames, first):
  seg = Segmenter(config)
  state = seg.init_state(frames, name="clip")
  seg.add_mask(state, first)
  return seg, np.stack([ids for _, ids in seg.propagate(state)])


def test_target_model_off_is_bit_identical_and_weight_zero_changes_nothing():
  frames, masks = synthetic.moving_shapes(n_frames=4, height=H, width=W, n_objects=1, seed=3)
  off = _color_config()
  off.propagation.target_model = "off"
  seg_off, ids_off = _segment(off, frames, masks[0])
  assert seg_off.propagator.target is None
  # Today's path: a Propagator built without a target model runs exactly these functions.
  assert Propagator(identity_net, seg_off.propagator.config).jitted == seg_off.propagator.jitted
  calls = []
  seg_zero = Segmenter(_color_config(weight=0.0))
  fuse = seg_zero.propagator.target.fuse
  seg_zero.propagator.target.fuse = lambda *a: calls.append(1) or fuse(*a)
  state = seg_zero.init_state(frames, name="clip")
  seg_zero.add_mask(state, masks[0])
  ids_zero = np.stack([ids for _, ids in seg_zero.propagate(state)])
  assert len(calls) == 3  # the fusion did run on every later frame
  np.testing.assert_array_equal(ids_off, ids_zero)


@pytest.mark.parametrize("update_every", [0, 2])  # the default, and refits from confident frames
def test_target_model_compiles_once_not_per_frame_or_video(update_every):
  config = _color_config(update_every=update_every)
  seg = Segmenter(config)
  fns = seg.propagator.jitted

  def run(seed):
    frames, masks = synthetic.moving_shapes(n_frames=8, height=H, width=W, n_objects=2, seed=seed)
    state = seg.init_state(frames, name=f"clip{seed}")
    seg.add_mask(state, masks[0])
    for _ in seg.propagate(state):
      pass

  target_fns = seg.propagator.target.jitted  # fit, fuse, update
  before = [jit_cache_size(f) for f in target_fns]
  run(seed=4)
  assert all(jit_cache_size(f) - b <= 1 for f, b in zip(target_fns, before))
  if update_every:
    first, latest = seg.propagator.target.params  # the first frame's set and the latest, refitted
    assert not np.array_equal(np.asarray(first[2]), np.asarray(latest[2]))
  after_first = sum(jit_cache_size(f) for f in fns)
  run(seed=5)  # new objects, motion and fitted parameters; same frame size and bucket
  assert sum(jit_cache_size(f) for f in fns) == after_first


def test_backbone_target_model_needs_a_learned_net():
  config = _color_config()
  config.propagation.target_model = "backbone"
  with pytest.raises(InputError, match="learned N_mp"):
    Segmenter(config)
  config.propagation.target_model = "colour"
  with pytest.raises(InputError, match="choose one of"):
    Segmenter(config)


def test_an_object_given_at_a_later_frame_is_fitted_on_that_frame():
  # Objects given at frame k (Segmenter.add_mask(frame_idx=k)): their target model learns from frame
  # k's pixels under their mask, not from frame 0's (where the object may not be at all).
  img0, _ = _scene(20, 24, seed=4)
  img1, mask1 = _scene(40, 20, seed=5)
  frames = np.stack([img0, img1])

  def params(frames_arg, starts):
    prop = Propagator(identity_net, PropagationConfig(scales=((0.15, 41),)), TargetModel(TargetConfig(features="color")))
    prop.fit_target(frames_arg, mask1[None], starts=starts)
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree.leaves(prop.target.params)])

  at_start = params(frames, np.array([1]))
  np.testing.assert_array_equal(at_start, params(img1, None))  # as if fitted on frame 1 alone
  assert not np.allclose(at_start, params(frames, np.array([0])))  # frame 0's pixels give another model


def _camouflaged(cx, cy, seed):
  """The object's pixels come from the same colours as its background (bmx-bumps' rider on the
  track): stripes and noise everywhere, the mask a disc."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:H, :W]
  img = np.where((yy % 4 < 2)[..., None], np.float32((200, 40, 30)), np.float32((220, 200, 40)))
  img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
  return img, (((yy - cy) ** 2 + (xx - cx) ** 2) < 10 ** 2).astype(np.float32)


def test_gate_turns_off_the_target_model_of_an_object_its_first_frame_fit_cannot_separate():
  clear, clear_mask = _scene(20, 24, seed=6)
  camo, camo_mask = _camouflaged(30, 24, seed=7)
  image = jnp.asarray(np.stack([clear, camo]), jnp.float32)
  prob = jnp.asarray(np.stack([clear_mask, camo_mask])[..., None])
  logits = jnp.asarray(np.random.default_rng(8).normal(0, 2, (2, H, W, 1)), jnp.float32)
  fused = {}
  for name, (low, high) in (("none", (0.0, 0.0)), ("gated", (0.8, 0.9))):
    model = TargetModel(TargetConfig(features="color", gate_low=low, gate_high=high))
    model.fit(image, prob)
    fused[name] = np.asarray(model.fuse(image, logits))
  quality = np.asarray(model.quality)
  assert quality[0] > 0.95 and quality[1] < 0.8, quality  # separation: clear object vs camouflaged
  np.testing.assert_array_equal(np.asarray(model.gates), [1.0, 0.0])
  np.testing.assert_array_equal(fused["gated"][0], fused["none"][0])  # a well-fitted object keeps it
  np.testing.assert_array_equal(fused["gated"][1], np.asarray(logits)[1])  # N_mp's logits alone
  assert not np.allclose(fused["none"][1], np.asarray(logits)[1])  # without the gate it would fuse


def test_gate_is_linear_between_its_bounds_and_off_when_unset():
  from vsreid_jax.propagation.target import gate  # pylint: disable=import-outside-toplevel
  q = jnp.array([0.5, 0.8, 0.85, 0.9, 1.0])
  np.testing.assert_allclose(np.asarray(gate(q, 0.8, 0.9)), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(gate(q, 0.0, 0.0)), np.ones(5))


def test_a_wider_fit_margin_teaches_the_background_the_object_will_move_over():
  # Beyond the tight crop lies an orange floor (between the object's red and yellow, like bmx-bumps'
  # track and rider): a fit on the tight crop never sees it, one on the wider crop (fit_margin)
  # learns it is background.
  img, mask = _scene(32, 24, seed=9)
  floor = np.zeros((H, W), bool)
  floor[:, :12] = floor[:, -12:] = True  # outside the tight crop (x 19..45), inside the wide one
  img[floor] = (225, 120, 35)

  def scores(fit_margin):
    target = TargetModel(TargetConfig(features="color", fit_margin=fit_margin))
    prop = Propagator(identity_net, PropagationConfig(scales=((0.15, 41),)), target)
    prop.fit_target(img, mask[None])
    return np.asarray(target.score(jnp.asarray(img[None], jnp.float32)))[0, :, :, 0]

  tight, wide = scores(0.0), scores(1.0)
  assert wide[floor].mean() < -2.0, wide[floor].mean()
  assert wide[floor].mean() < tight[floor].mean() - 2.0, (tight[floor].mean(), wide[floor].mean())
  assert wide[mask > 0].mean() > 2.0, wide[mask > 0].mean()
