"""Algorithm 1 end to end on generated clips: tracking, lost objects, multi-scale, compilations."""
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax.api import Segmenter
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.data import synthetic
from vsreid_jax.flow.dis import DISFlow
from vsreid_jax.propagation.algorithm1 import (PropagationConfig, Propagator, finish_stage, object_bucket,
                                               pad_objects)
from vsreid_jax.propagation.nets import identity_net, with_flip_average
from vsreid_jax.utils import jit_cache_size


def _identity_config():
  config = segment_config.get_config()
  config.net = "identity"  # these tests are about Algorithm 1's geometry, not a learned net
  return config


def _run(frames, first, **overrides):
  config = _identity_config()
  for k, v in overrides.items():
    setattr(config.propagation, k, v)
  seg = Segmenter(config)
  state = seg.init_state(frames, name="clip")
  seg.add_mask(state, first)
  return seg, np.stack([ids for _, ids in seg.propagate(state)])


def _iou(a, b):
  return (a & b).sum() / max((a | b).sum(), 1)


def test_object_bucket():
  assert [object_bucket(k, (1, 2, 4, 8)) for k in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
  with pytest.raises(ValueError):
    object_bucket(9, (1, 2, 4, 8))


def test_warp_only_propagation_tracks_moving_objects():
  frames, masks = synthetic.moving_shapes(n_frames=10, height=96, width=128, n_objects=2, seed=0, grow=1.0)
  seg = Segmenter(_identity_config())
  state = seg.init_state(frames, name="clip")
  seg.add_mask(state, masks[0])
  out = np.stack([ids for _, ids in seg.propagate(state)])
  np.testing.assert_array_equal(out[0], masks[0])
  for k in (1, 2):
    ious = [_iou(out[t] == k, masks[t] == k) for t in range(10)]
    static = [_iou(masks[0] == k, masks[t] == k) for t in range(10)]  # never moving the mask
    assert min(ious) > 0.45 and ious[1] > 0.85, ious
    assert np.mean(ious[5:]) > np.mean(static[5:]) + 0.2, (ious, static)


def test_lost_object_stops_and_stays_empty():
  # Object 1 leaves the frame quickly (fast, heading out); once its area < 1/10 of frame 0 it is lost.
  h, w = 48, 64
  frames = np.zeros((6, h, w, 3), np.uint8)
  first = np.zeros((h, w), np.uint8)
  first[10:30, 40:60] = 1
  prop = Propagator(identity_net, PropagationConfig(scales=((0.15, 33),)))
  prob = jnp.asarray(pad_objects(first[None].astype(np.float32), 1))
  alive = jnp.array([True])
  area0 = jnp.array([400.0])
  flow = np.zeros((h, w, 2), np.float32)
  flow[..., 0] = -8.0  # content moves 8 px right per frame
  areas, alives = [], []
  for t in range(1, 6):
    prob, alive, area = prop.step(prob, frames[t], flow, alive, area0)
    areas.append(int(area[0]))
    alives.append(bool(alive[0]))
  # 20x16 px still inside after one shift (80% of frame 0): present; 20x8 (40%) still present;
  # then gone, and it stays lost with an all-zero map.
  assert areas[:3] == [320, 160, 0]
  assert alives == [True, True, False, False, False]
  assert float(jnp.max(prob)) == 0.0


def _shift_once(lost_ratio):
  """One step of a 20x20 object (area 400) of which 20x11 (55%) stays inside the frame."""
  h, w = 48, 64
  first = np.zeros((1, h, w), np.float32)
  first[0, 10:30, 43:63] = 1
  flow = np.zeros((h, w, 2), np.float32)
  flow[..., 0] = -10.0  # content moves 10 px right: columns 53..63 remain
  prop = Propagator(identity_net, PropagationConfig(scales=((0.15, 33),), lost_ratio=lost_ratio))
  prob, alive, area = prop.step(jnp.asarray(first), np.zeros((h, w, 3), np.uint8), flow, jnp.array([True]),
                                jnp.array([400.0]))
  return np.asarray(prob)[0], bool(alive[0]), int(area[0])


def test_object_is_lost_below_lost_ratio_of_its_first_area_even_when_not_empty():
  prob, alive, area = _shift_once(lost_ratio=0.5)
  assert area == 220  # 0.55 of the first frame's area
  assert alive and prob.max() > 0.5  # 0.55 >= 0.5: still the object
  prob, alive, area = _shift_once(lost_ratio=0.6)
  assert area == 220
  assert not alive and prob.max() == 0.0  # 0.55 < 0.6: lost although 220 px remain


def test_finish_stage_lost_rule_at_the_boundary():
  # Areas 0, 39, 40, 41 px against first areas of 400 and lost_ratio 0.1: lost below 40 px.
  prob = np.zeros((4, 10, 10), np.float32)
  for k, n in enumerate((0, 39, 40, 41)):
    prob[k].flat[:n] = 1.0
  alive = jnp.ones(4, bool)
  out, still, area = finish_stage(jnp.asarray(prob), 1.0, alive, jnp.full(4, 400.0), 0.1, threshold=0.5)
  np.testing.assert_array_equal(np.asarray(area), [0, 39, 40, 41])
  np.testing.assert_array_equal(np.asarray(still), [False, False, True, True])
  np.testing.assert_array_equal(np.asarray(out).reshape(4, -1).max(axis=1), [0, 0, 1, 1])
  # An object already lost stays lost whatever its area.
  _, still, _ = finish_stage(jnp.asarray(prob), 1.0, jnp.array([True, True, False, True]), jnp.full(4, 400.0),
                             0.1, threshold=0.5)
  np.testing.assert_array_equal(np.asarray(still), [False, False, False, True])


def test_multiscale_averages_scales_and_no_box_mode():
  frames, masks = synthetic.moving_shapes(n_frames=4, height=64, width=96, n_objects=1, seed=2)
  _, one = _run(frames, masks[0])
  _, multi = _run(frames, masks[0], scales=((0.15, 97), (0.4, 65)))
  _, nobox = _run(frames, masks[0], use_box=False, scales=((0.0, 97),))
  for out in (one, multi, nobox):
    assert _iou(out[-1] > 0, masks[-1] > 0) > 0.7


def test_flip_average_of_symmetric_net_is_identity_and_flow_x_is_negated():
  seen = []

  def net(image, flow, prob):
    seen.append(flow)
    return prob * 0 + flow[..., :1]

  flipped = with_flip_average(net)
  flow = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 5, 2)).astype(np.float32))
  out = flipped(jnp.zeros((1, 5, 5, 3)), flow, jnp.zeros((1, 5, 5, 1)))
  # Horizontal flow is odd under mirroring: the mirrored prediction flipped back equals -flow_x.
  np.testing.assert_allclose(np.asarray(out), 0.0, atol=1e-6)


def test_compilations_bounded_by_shape_buckets():
  """A 10-frame clip with moving, growing objects compiles each stage once per shape bucket, and a
  second clip of the same frame size and bucket compiles nothing new."""
  config = _identity_config()
  config.propagation.scales = ((0.15, 81), (0.3, 49))  # two crop sizes: two buckets per crop stage
  seg = Segmenter(config)
  fns = seg.propagator.jitted

  def run(seed, n_objects):
    frames, masks = synthetic.moving_shapes(n_frames=10, height=72, width=104, n_objects=n_objects, seed=seed)
    state = seg.init_state(frames, name=f"clip{seed}")
    seg.add_mask(state, masks[0])
    for _ in seg.propagate(state):
      pass

  from vsreid_jax.solver.merge import merge_probs
  fns = fns + (merge_probs,)
  before = sum(jit_cache_size(f) for f in fns)
  run(seed=5, n_objects=2)
  first = sum(jit_cache_size(f) for f in fns) - before
  # warp 1 + crop 2 + net 2 + paste 2 + finish 1 + merge 1 (bucket 2, one frame size).
  assert 0 < first <= 9, first
  run(seed=6, n_objects=2)  # other objects, other motion, same frame size and bucket
  assert sum(jit_cache_size(f) for f in fns) - before == first


def test_binarize_prior_warps_the_thresholded_mask():
  h, w = 24, 32
  prev = np.zeros((1, h, w), np.float32)
  prev[0, 5:15, 8:20] = 0.6  # confident enough to be the object, but soft
  prev[0, 0:3, 0:3] = 0.4  # below the threshold: not the object
  flow = np.zeros((h, w, 2), np.float32)
  outs = {}
  for binarize in (False, True):
    prop = Propagator(identity_net, PropagationConfig(scales=((0.15, 65),), binarize_prior=binarize))
    prob, _, _ = prop.step(jnp.asarray(prev), np.zeros((h, w, 3), np.uint8), flow, jnp.array([True]),
                           jnp.array([120.0]))
    outs[binarize] = np.asarray(prob)[0]
  np.testing.assert_allclose(outs[False][10, 14], 0.6, atol=1e-3)
  np.testing.assert_allclose(outs[True][10, 14], 1.0, atol=1e-3)
  assert outs[True][1, 1] == 0.0


def test_scales_of_one_crop_size_run_in_one_net_call():
  frames, masks = synthetic.moving_shapes(n_frames=2, height=48, width=64, n_objects=2, seed=1, grow=1.0)
  first = pad_objects(np.stack([(masks[0] == k).astype(np.float32) for k in (1, 2)]), 2)
  flow = DISFlow("ultrafast").flow(frames[1], frames[0])
  batches = []

  def counting_net(image, flow, prob):
    batches.append(image.shape[0])
    return identity_net(image, flow, prob)

  def run(scales):
    prop = Propagator(counting_net, PropagationConfig(scales=scales))
    return prop.step(jnp.asarray(first), frames[1], flow, jnp.array([True, True]), jnp.asarray(first.sum((1, 2))))[0]

  both = run(((0.15, 33), (0.4, 33)))
  assert batches == [4]  # 2 objects x 2 scales, one call
  mean = (run(((0.15, 33),)) + run(((0.4, 33),))) / 2
  np.testing.assert_allclose(np.asarray(both), np.asarray(mean), atol=1e-5)


def test_crop_keeps_the_first_frame_scale_when_the_mask_shrinks():
  # A 40x40 object seen as 10x10 (occluded): with min_scale 1 its crop box grows back to the scale
  # of a 40x40 box (x sqrt(1600 / 100) = 4 per side, capped by the image), centred on the mask.
  from vsreid_jax.propagation.algorithm1 import crop_stage  # pylint: disable=g-import-not-at-top
  h, w = 120, 160
  warped = np.zeros((2, h, w), np.float32)
  warped[0, 50:60, 70:80] = 1.0  # shrunk to 10x10 from 40x40
  warped[1, 20:60, 20:60] = 1.0  # at its first-frame size
  image = jnp.zeros((h, w, 3), jnp.float32)
  flow = jnp.zeros((h, w, 2), jnp.float32)
  first_area = jnp.array([1600.0, 1600.0])
  kw = dict(margin=0.15, size=33, use_box=True, threshold=0.5)
  _, _, _, paper, _ = crop_stage(image, flow, jnp.asarray(warped), first_area, **kw)
  _, _, _, kept, _ = crop_stage(image, flow, jnp.asarray(warped), first_area, min_scale=1.0, **kw)
  paper, kept = np.asarray(paper), np.asarray(kept)
  np.testing.assert_allclose(paper[0], [68.5, 48.5, 81.5, 61.5])  # 10 px + 15% each side
  np.testing.assert_allclose(kept[0], [49.0, 29.0, 101.0, 81.0])  # 13 px x 4, same centre
  np.testing.assert_allclose(kept[1], paper[1])  # an object at its first-frame area keeps the paper's box
  _, _, _, half, _ = crop_stage(image, flow, jnp.asarray(warped), first_area, min_scale=0.5, **kw)
  np.testing.assert_allclose(np.asarray(half)[0], [62.0, 42.0, 88.0, 68.0])  # x 2


def test_min_crop_scale_reaches_the_propagator():
  config = _identity_config()
  config.propagation.min_crop_scale = 0.75
  assert Segmenter(config).propagator.config.min_crop_scale == 0.75


def _bright_net(image, flow, prob):
  """Sees the object wherever the crop shows it (bright pixels), whatever the prior says."""
  del flow, prob
  return jnp.where(image.mean(-1, keepdims=True) > 100, 10.0, -10.0)


def _confident_net(image, flow, prob):
  """Sees bright pixels under the prior, more sure where the prior is."""
  del flow
  return jnp.where((image.mean(-1, keepdims=True) > 100) & (prob > 0.5), 4.0 * prob, -10.0)


def _square(h=48, w=80):
  """(first [1, h, w] a 10x10 object at rows and columns 20-30, zero flow [h, w, 2])."""
  first = np.zeros((1, h, w), np.float32)
  first[0, 20:30, 20:30] = 1
  return first, np.zeros((h, w, 2), np.float32)


def test_lost_search_finds_an_object_that_jumped_out_of_its_crop():
  # A 10x10 object jumps 16 px right between frames; the flow (zero) does not follow it, so its
  # paper crop (box + 15%) shows only background and the lost rule drops it. With
  # lost_search_margin 2.0 the box grown by 2 widths each side reaches it: found, alive, N_mp once more.
  first, flow = _square()
  image = np.zeros((48, 80, 3), np.uint8)
  image[20:30, 36:46] = 255
  found = {}
  for margin in (0.0, 2.0):
    prop = Propagator(_bright_net, PropagationConfig(scales=((0.15, 97),), lost_search_margin=margin))
    prob, alive, area = prop.step(jnp.asarray(first), image, flow, jnp.array([True]), jnp.array([100.0]))
    found[margin] = (np.asarray(prob)[0] > 0.5, bool(alive[0]), int(area[0]), prop.net_calls)
  assert found[0.0][1:] == (False, 0, 1)
  mask, alive, area, calls = found[2.0]
  assert alive and calls == 2
  assert _iou(mask, image[..., 0] > 0) > 0.8 and area >= 80


def test_exclusive_probs_leave_each_pixel_to_its_most_probable_object():
  from vsreid_jax.propagation.algorithm1 import exclusive_probs  # pylint: disable=g-import-not-at-top
  p = jnp.array([[[0.7, 0.2, 0.95]], [[0.6, 0.1, 0.9]], [[0.0, 0.3, 0.0]]])
  np.testing.assert_allclose(np.asarray(exclusive_probs(p)),
                             [[[0.7, 0.2, 0.95]], [[0.3, 0.1, 0.05]], [[0.0, 0.3, 0.0]]], atol=1e-6)
  one = jnp.array([[[0.2, 0.6, 0.99]]])
  np.testing.assert_array_equal(np.asarray(exclusive_probs(one)), np.asarray(one))


def test_exclusive_propagation_loses_an_object_hidden_behind_another():
  # Object 1 (left) sits behind object 2, which moves over it and covers it wholly; the net sees
  # every bright pixel, so object 1's mask stays on object 2's pixels on its own. With exclusive
  # probabilities, object 2 (more probable where it is, the prior of object 1 there being lower) takes
  # them and object 1 is lost; without, both masks cover the same pixels.
  h, w = 48, 80
  first = np.zeros((2, h, w), np.float32)
  first[0, 20:30, 20:30] = 1
  first[1, 16:34, 36:56] = 1
  prior = first.copy()
  prior[0] *= 0.8  # object 1 is less certain of its mask than object 2 of its own
  image = np.zeros((h, w, 3), np.uint8)
  image[16:34, 16:36] = 255  # object 2 now over object 1's place
  prior[1] = 0.0
  prior[1, 16:34, 16:36] = 1.0  # (the warped prior of object 2 follows it: flow is not under test)
  flow = np.zeros((h, w, 2), np.float32)
  out = {}
  for exclusive in (False, True):
    prop = Propagator(_confident_net, PropagationConfig(scales=((0.15, 97),), exclusive=exclusive))
    prob, alive, _ = prop.step(jnp.asarray(prior), image, flow, jnp.array([True, True]), jnp.array([100.0, 360.0]))
    out[exclusive] = (np.asarray(prob) > 0.5, np.asarray(alive))
  masks, alive = out[False]
  assert alive.all() and masks[0].sum() == 100 and (masks[0] & masks[1]).sum() == 100
  masks, alive = out[True]
  assert alive.tolist() == [False, True] and masks[1].sum() == 360 and not masks[0].any()


def test_exclusive_reaches_the_propagator():
  config = _identity_config()
  config.propagation.exclusive = True
  assert Segmenter(config).propagator.config.exclusive


def test_a_dormant_object_is_revived_where_it_reappears():
  # A 10x10 object is hidden (dark) in frames 1-2 and shows again at its place in frame 3. Lost at
  # frame 1 either way; with revive_ratio 0.5 N_mp keeps looking on its last mask's crop and it is
  # alive again at frame 3, with its mask; without, it stays lost.
  first, flow = _square()
  shown = np.zeros((48, 80, 3), np.uint8)
  shown[20:30, 20:30] = 255
  frames = [shown, np.zeros_like(shown), np.zeros_like(shown), shown]
  out = {}
  for revive in (0.0, 0.5):
    prop = Propagator(_confident_net, PropagationConfig(scales=((0.15, 97),), revive_ratio=revive))
    prob, alive = jnp.asarray(first), jnp.array([True])
    last = prop.remember(None, prob, alive)
    seen = []
    for image in frames[1:]:
      prob, alive, _ = prop.step(prob, image, flow, alive, jnp.array([100.0]), last=last)
      last = prop.remember(last, prob, alive)
      seen.append((bool(alive[0]), int((np.asarray(prob[0]) > 0.5).sum())))
    out[revive] = seen
  assert out[0.0] == [(False, 0)] * 3
  assert out[0.5] == [(False, 0), (False, 0), (True, 100)]


def test_an_exclusive_dormant_object_is_not_revived_on_its_occluder():
  # Object 1 is hidden by object 2 standing on its place (frames 1-2): dormant, its crop shows
  # object 2's bright pixels, which N_mp would take for it; object 2, more probable there, keeps them
  # (exclusive) so object 1 stays lost. Without exclusive it is revived on the occluder.
  h, w = 48, 80
  first = np.zeros((2, h, w), np.float32)
  first[0, 20:30, 20:30] = 0.8  # object 1 less sure of its mask than object 2 of its own
  first[1, 18:32, 50:64] = 1.0
  t0 = np.zeros((h, w, 3), np.uint8)
  t0[20:30, 20:30] = 255
  t0[18:32, 50:64] = 255
  over = np.zeros((h, w, 3), np.uint8)
  over[18:32, 18:32] = 255  # object 2 now where object 1 was
  flow = np.zeros((h, w, 2), np.float32)
  moved = np.zeros((h, w), np.float32)
  moved[18:32, 18:32] = 1.0
  out = {}
  for exclusive in (False, True):
    prop = Propagator(_confident_net, PropagationConfig(scales=((0.15, 97),), revive_ratio=0.5, exclusive=exclusive))
    alive = jnp.array([False, True])  # object 1 was lost when object 2 came over it
    last = jnp.asarray(first)
    prior = jnp.stack([jnp.zeros((h, w)), jnp.asarray(moved)])  # object 2's warped mask follows it
    _, alive, _ = prop.step(prior, over, flow, alive, jnp.array([100.0, 196.0]), last=last)
    out[exclusive] = np.asarray(alive).tolist()
  assert out[False] == [True, True] and out[True] == [False, True]


def test_revive_ratio_reaches_the_propagator():
  config = _identity_config()
  config.propagation.revive_ratio = 0.5
  assert Segmenter(config).propagator.config.revive_ratio == 0.5
