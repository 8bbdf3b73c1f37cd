"""ReID training: box samplers, loss going down on synthetic crops, exact resume."""
import jax
import numpy as np
import pytest

from vsreid_jax.geometry import box_iou
from vsreid_jax.reid import data as data_lib
from vsreid_jax.reid import losses
from vsreid_jax.reid import train as train_lib

from test_reid_model import S, tiny_config


def test_samplers_respect_their_iou_ranges():
  rng = np.random.default_rng(0)
  box = np.array([100, 60, 180, 200], np.float32)
  for _ in range(50):
    bg = data_lib.background_box(box, rng, 0.1, 427, 240)
    part = data_lib.partial_box(box, rng, (0.1, 0.4), 427, 240)
    pos = data_lib.jitter_box(box, rng, 0.06, 0.15, 427, 240)
    assert box_iou(bg, box)[0, 0] < 0.1
    assert 0.1 <= box_iou(part, box)[0, 0] <= 0.4
    assert box_iou(pos, box)[0, 0] > 0.5
    for b in (bg, part, pos):
      assert 0 <= b[0] < b[2] <= 427 and 0 <= b[1] < b[3] <= 240


class SyntheticBatches:
  """4 identities (a coloured square on its own grey level) x 3 noisy crops, plus 4 noise crops."""

  def batch(self, step):
    rng = np.random.default_rng([7, step])
    crops, labels = [], []
    for k in range(4):
      for _ in range(3):
        c = np.full((S, S, 3), 40 + 50 * k, np.float32) + rng.normal(0, 20, (S, S, 3))
        o = rng.integers(4, 12, 2)
        c[o[0]:o[0] + 16, o[1]:o[1] + 16] = np.eye(3)[k % 3] * 200 + 30 * (k // 3)
        crops.append(c)
        labels.append(k)
    for _ in range(4):
      crops.append(rng.uniform(0, 255, (S, S, 3)))
      labels.append(losses.NO_IDENTITY)
    return dict(crops=np.clip(np.stack(crops), 0, 255).astype(np.uint8), labels=np.asarray(labels, np.int32))


def small_train_config(steps):
  c = tiny_config()
  c.optimizer.lr, c.optimizer.warmup_steps = 3e-3, 0
  c.train.steps = steps
  c.train.log_every = 4
  c.train.checkpoint_every = 8
  c.train.plot_every = 100
  c.train.max_seconds = 0.0
  return c


def test_train_reduces_the_loss_and_resumes_exactly(tmp_path):
  c = small_train_config(16)
  full = train_lib.train(c, str(tmp_path / "full"), SyntheticBatches(), progress=False)
  losses_ = [r["loss"] for r in full["rows"]]
  assert losses_[-1] < 0.7 * losses_[0], losses_
  part = tmp_path / "part"
  train_lib.train(c, str(part), SyntheticBatches(), stop_at=8, progress=False)
  resumed = train_lib.train(c, str(part), SyntheticBatches(), resume=True, progress=False)
  assert [r["step"] for r in resumed["rows"]] == [r["step"] for r in full["rows"]]
  np.testing.assert_allclose([r["loss"] for r in resumed["rows"]], losses_, rtol=1e-4)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         jax.device_get(full["state"].params), jax.device_get(resumed["state"].params))


def test_resume_after_an_unreadable_latest_checkpoint_continues_from_the_one_before(tmp_path, capsys):
  c = small_train_config(4)
  c.train.log_every = c.train.checkpoint_every = 2
  run = tmp_path / "run"
  first = train_lib.train(c, str(run), SyntheticBatches(), progress=False)
  for p in (run / "checkpoints" / "4").rglob("*"):
    if p.is_file():
      p.write_bytes(b"")  # a copy cut short
  resumed = train_lib.train(c, str(run), SyntheticBatches(), resume=True, progress=False)
  assert "checkpoints/4: checkpoint unreadable" in capsys.readouterr().err
  assert [r["step"] for r in resumed["rows"]] == [2, 4]
  # Steps 3-4 were run again from checkpoint 2, exactly as the first time.
  assert resumed["rows"][1]["loss"] == pytest.approx(first["rows"][1]["loss"], rel=1e-4)
  assert int(resumed["state"].step) == 4


def test_composites_paste_a_batch_identity_over_another_sequences_object(shapes_root):
  from vsreid_jax.configs import reid_lite_cpu
  from vsreid_jax.data.objects import ObjectBank
  c = reid_lite_cpu.get_config()
  c.crop_size = 32
  d = c.data
  d.frame_height, d.identities_per_batch, d.crops_per_identity = 64, 2, 2
  d.instance_pairs_per_batch, d.background_per_batch, d.partial_per_batch = 1, 1, 1
  d.composites_per_batch = 4
  bank = ObjectBank([(shapes_root, "480p")], subset="val")
  batches = data_lib.ReIDBatches(bank, c)
  b = batches.batch(0)
  kinds = b["kinds"]
  assert len(kinds) == 2 * 2 + 2 + 1 + 1 + 4 and (kinds == data_lib.KIND_COMPOSITE).sum() == 4
  # each composite carries the label of one of the batch's identities (it has positives to pull to)
  assert set(b["labels"][kinds == data_lib.KIND_COMPOSITE]) <= set(b["labels"][kinds == data_lib.KIND_OBJECT])
  np.testing.assert_array_equal(batches.batch(0)["crops"], b["crops"])  # a function of the step
  # One composite by hand: object 1 of "one-object" over object 2 of "two-objects": the pasted
  # pixels are the cut-out's, centred on the host's box, and the crop box surrounds them.
  src = next(i for i, r in enumerate(bank.refs) if r.seq == "one-object")
  host = next(i for i, r in enumerate(bank.refs) if r.seq == "two-objects" and r.obj_id == 2)
  obj = batches._cutout(src)
  image, box = batches._composite(obj, host, np.random.default_rng(0))
  hb = np.asarray(bank.refs[host].box)
  oh, ow = obj.alpha.shape
  x0, y0 = int(round((hb[0] + hb[2]) / 2 - ow / 2)), int(round((hb[1] + hb[3]) / 2 - oh / 2))
  inside = obj.alpha > 0.5
  ys, xs = np.nonzero(inside)
  keep = (y0 + ys >= 0) & (y0 + ys < 64) & (x0 + xs >= 0) & (x0 + xs < 96)
  got = image[y0 + ys[keep], x0 + xs[keep]].astype(int)
  want = obj.rgb[ys[keep], xs[keep]].astype(int)
  assert np.abs(got - want).max() <= 1 + 255 * (1 - obj.alpha[ys[keep], xs[keep]].min())
  centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
  pasted = np.array([x0 + xs[keep].mean(), y0 + ys[keep].mean()])
  assert np.linalg.norm(centre - pasted) < 0.25 * max(box[2] - box[0], box[3] - box[1])
