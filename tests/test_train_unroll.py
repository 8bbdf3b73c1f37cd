"""Unrolled training (issue 17 lever 1): own clips are fed the net's own binarised predictions,
the curriculum ramps, and a killed run resumed at a clip-batch end finishes bit-identical."""
import jax
import numpy as np
import pytest

from vsreid_jax.configs import train_unroll
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.errors import InputError
from vsreid_jax.train import unroll

from test_train_loop import TinyNet  # pylint: disable=g-bad-import-order

S = 17


@pytest.fixture(scope="module")
def config(two_clip_dir, tmp_path_factory):
  c = train_unroll.get_config("lite_cpu")
  d = c.data
  d.data_dir, d.roots, d.held_out = str(two_clip_dir), (("davis", "480p"),), ("b",)
  d.crop_size, d.batch_size, d.cache_dir = S, 2, str(tmp_path_factory.mktemp("cache"))
  c.init.weights = ""  # TinyNet: nothing to load
  c.optimizer.lr, c.optimizer.warmup_steps = 3e-3, 2
  c.unroll.length, c.unroll.own_max, c.unroll.own_ramp = 3, 1.0, 0.01
  c.train.update(steps=12, log_every=1, checkpoint_every=3, plot_every=3, keep_checkpoints=5)
  # As train() does: every flow from the (float16) disk cache, never a just-computed float32 one.
  _examples(c).precompute_flows(False)
  return c


def _examples(config):
  train_spec, _ = pe.specs_from_config(config.data, S, config.data.margin)
  return pe.PropagationExamples(train_spec, config.data.cache_dir)


def test_own_share_ramps_from_zero_to_max():
  shares = [unroll.own_share(s, 100, 0.75, 0.2) for s in (0, 10, 20, 50, 100)]
  assert shares == [0.0, 0.375, 0.75, 0.75, 0.75]


def test_own_clips_get_the_fed_prediction_and_teacher_clips_the_ground_truth(config):
  ex = _examples(config)
  sampler = unroll.ClipSampler(ex, 3, seed=0, margin=0.15, margin_jitter=0.0, flip_prob=0.5)
  un = unroll.Unroller(ex, sampler, S, colour_prob=0.0, threshold=0.5)
  # Clips 0..7, all own: the step-0 prior is the warped GT; then feed "left half of the crop" logits.
  un.start(0, 8, share=1.0)
  batch0, own0, iou0 = un.batch(0)
  assert own0 == 0.0 and iou0 > 0.6  # frame 0: the warped ground truth
  left = np.full((8, S, S, 1), -20.0, np.float32)
  left[:, :, :S // 2] = 20.0
  un.feed(left)
  flips = [c.flip for c in un.clips]
  assert any(flips) and not all(flips)
  for b, c in enumerate(un.clips):
    ys, xs = np.nonzero(un.prev[b])
    box = np.asarray(un.boxes[b])
    centre = (box[0] + box[2]) / 2
    # The crop seen by the net was mirrored for flipped clips: its left half is the frame's right.
    assert (xs.mean() > centre) == c.flip, (b, c.flip, xs.mean(), centre)
  batch1, own1, _ = un.batch(1)
  assert own1 == 1.0
  # Each fed half-box, warped by a few pixels, covers about half of its own new crop.
  assert np.all(np.abs(batch1["prior"].mean(axis=(1, 2, 3)) - 0.5) < 0.2), batch1["prior"].mean(axis=(1, 2, 3))
  # Teacher clips (share 0) ignore what is fed: frame 1's prior is the warped GT.
  un.start(0, 8, share=0.0)
  un.batch(0)
  un.feed(left)
  batch_t, own_t, iou_t = un.batch(1)
  assert own_t == 0.0 and iou_t > 0.6
  # An own clip whose prediction emptied restarts from the ground truth.
  un.start(0, 8, share=1.0)
  un.batch(0)
  un.feed(np.full((8, S, S, 1), -20.0, np.float32))
  assert un.batch(1)[1] == 0.0


def test_unrolled_resume_continues_exactly(config, tmp_path):
  run = lambda w, **kw: unroll.train(config, str(w), model=TinyNet(), examples=_examples(config), progress=False, **kw)
  full = run(tmp_path / "full", stop_at=6)
  first = run(tmp_path / "killed", stop_at=2)  # stops at the end of its clip batch: step 3
  assert int(first["state"].step) == 3
  resumed = run(tmp_path / "killed", resume=True, stop_at=6)
  assert int(resumed["state"].step) == 6
  for a, b in zip(jax.tree.leaves(jax.device_get(full["state"])), jax.tree.leaves(jax.device_get(resumed["state"]))):
    np.testing.assert_array_equal(a, b)
  curve = lambda rows: [(r["step"], r["loss"], r["iou"], r["grad_norm"], r["lr"], r["own"], r["prior_iou"])
                         for r in rows]
  assert curve(full["train_rows"]) == curve(resumed["train_rows"])
  assert [r["step"] for r in full["train_rows"]] == list(range(1, 7))
  own = [r["own"] for r in full["train_rows"]]
  assert own[0] == 0.0 and max(own) > 0  # frame 0 of a clip never, later frames of own clips do
  with pytest.raises(InputError, match="already holds checkpoints"):
    run(tmp_path / "killed", stop_at=12)
