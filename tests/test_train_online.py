"""Online adaptation on the first frame: exact synthetic flow, determinism, untouched base weights,
a falling loss, variable swaps without recompiling, and `vsreid segment --online-steps`."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.api import Segmenter, SwappableNet
from vsreid_jax.configs import online as online_config
from vsreid_jax.configs import propagation_lite_cpu
from vsreid_jax.configs import segment as segment_config
from vsreid_jax.train import propagation_examples as pe
from vsreid_jax.data import synthetic
from vsreid_jax.flow.warp import warp
from vsreid_jax.models import weights
from vsreid_jax.models.propagation import build_model, dummy_inputs, numpy_init
from vsreid_jax.train import online
from vsreid_jax.train.step import bce
from vsreid_jax.utils import jit_cache_size

S = 33
TINY = "tiny_online_test"  # a weights-file config name that exists only through the fixture below


def tiny_config():
  c = propagation_lite_cpu.get_config()
  c.crop_size = S
  m = c.model
  m.backbone.stage_sizes = (1, 1, 1, 1)
  m.backbone.width = 8
  m.aspp.branch_channels = m.aspp.out_channels = 8
  m.skip.channels, m.skip.decoder_channels = 4, 8
  return c


def adapt_config(steps=16, lr=3e-3):
  c = online_config.get_config("lite_cpu")
  c.steps = steps
  c.optimizer.lr = lr
  c.prefetch = 0
  return c


@pytest.fixture(scope="module")
def tiny():
  model = build_model(tiny_config().model)
  return model, numpy_init(model, *dummy_inputs(S), train=False)


@pytest.fixture(scope="module")
def clip():
  frames, ids = synthetic.moving_shapes(n_frames=6, height=64, width=96, n_objects=2, seed=0)
  return frames, np.stack([(ids[0] == k).astype(np.float32) for k in (1, 2)])


@pytest.fixture(scope="module")
def adapter(tiny):
  return online.OnlineAdapter(tiny[0], adapt_config(), crop_size=S, margin=0.15)


@pytest.fixture
def tiny_weights(tiny, tmp_path, monkeypatch):
  """A weights file of the tiny net; `model_config` resolves its config name to tiny_config()."""
  path = tmp_path / "tiny.msgpack"
  weights.save_weights(path, tiny[1], TINY)
  real = weights.model_config
  monkeypatch.setattr(weights, "model_config", lambda name: tiny_config() if name == TINY else real(name))
  return str(path)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("paste", [0.0, 1.0])
def test_synthetic_flow_maps_the_current_frame_onto_the_first(clip, paste):
  frames, masks = clip
  synth = online_config.synth_config()
  synth.paste_prob = paste
  rng = np.random.default_rng(0)
  cache = {}
  for _ in range(4):
    pair = online.synthetic_pair(frames[0], masks, rng, synth, cache)
    assert (pair["pasted"] >= 0) == bool(paste)
    valid = pair["valid"]
    assert valid.mean() > 0.5
    warped = np.asarray(warp(jnp.asarray(masks), jnp.asarray(pair["flow"])))
    for k in range(len(masks)):
      a, b = (warped[k] > 0.5) & valid, (pair["masks"][k] > 0.5) & valid
      assert (a & b).sum() / max((a | b).sum(), 1) > 0.95
    # The image too: current(x) = first(x + flow(x)) on valid pixels.
    for c in range(3):
      back = np.asarray(warp(jnp.asarray(frames[0][None, ..., c], jnp.float32), jnp.asarray(pair["flow"])))[0]
      assert np.abs(back - pair["image"][..., c])[valid].mean() < 2.0
  assert not paste or cache  # the inpainted background is made once and kept


def test_examples_are_crops_around_the_prior_and_deterministic(clip):
  frames, masks = clip
  ex = online.FirstFrameExamples(frames[0], masks, adapt_config(), S, 0.15, seed=3)
  a, b = ex.record(5), online.FirstFrameExamples(frames[0], masks, adapt_config(), S, 0.15, seed=3).record(5)
  for key in ("image", "flow", "prior", "target"):
    np.testing.assert_array_equal(a[key], b[key])
  assert a["image"].shape == (S, S, 3) and a["flow"].shape == (S, S, 2) and a["prior"].shape == (S, S, 1)
  assert (a["target"] > 127).mean() > 0.2  # the object fills the crop, as at inference


def test_adaptation_is_deterministic_lowers_the_loss_and_leaves_the_base_untouched(tiny, adapter, clip):
  _, variables = tiny
  frames, masks = clip
  before = _leaves(variables)
  first, info = adapter.adapt(variables, frames[0], masks, seed=0)
  second, _ = adapter.adapt(variables, frames[0], masks, seed=0)
  other, _ = adapter.adapt(variables, frames[0], masks, seed=1)
  for x, y in zip(before, _leaves(variables)):
    np.testing.assert_array_equal(x, y)  # base variables untouched (the step donates its copy)
  for x, y in zip(_leaves(first), _leaves(second)):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(_leaves(first), _leaves(other)))
  assert any(not np.array_equal(x, y) for x, y in zip(_leaves(first["params"]), _leaves(variables["params"])))
  for x, y in zip(_leaves(first["batch_stats"]), _leaves(variables["batch_stats"])):
    np.testing.assert_array_equal(x, y)  # BatchNorm frozen
  assert info["loss"].shape == (16,) and np.isfinite(info["loss"]).all() and info["seconds"] > 0
  # The loss falls on pairs of the same clip the adaptation never saw (another seed).
  model = tiny[0]
  held_out = online.FirstFrameExamples(frames[0], masks, adapt_config(), S, 0.15, seed=123)
  batch = pe.to_batch([held_out.record(i) for i in range(8)])
  loss = lambda v: float(bce(model.apply(v, batch["image"], batch["flow"], batch["prior"]), batch["target"]))
  assert loss(first) < 0.85 * loss(variables), (loss(first), loss(variables))


def test_swapping_variables_does_not_recompile(tiny, adapter, clip):
  model, variables = tiny
  frames, masks = clip
  adapted, _ = adapter.adapt(variables, frames[0], masks)
  net = SwappableNet(model, variables, flip=True, config_name=TINY, model_config=tiny_config())
  x = [np.asarray(a) + 0.5 for a in dummy_inputs(S, batch=2)]
  base_out = np.asarray(net(*x))
  assert jit_cache_size(net) == 1
  net.use(adapted)
  adapted_out = np.asarray(net(*x))
  net.use(None)
  np.testing.assert_array_equal(np.asarray(net(*x)), base_out)
  assert jit_cache_size(net) == 1
  assert not np.allclose(adapted_out, base_out)


def test_segmenter_adapts_each_video_with_the_same_result(tiny_weights, shapes_root):
  from vsreid_jax.data import DavisDataset
  config = segment_config.get_config()
  config.net, config.online_steps = tiny_weights, 2
  seg = Segmenter(config)
  assert seg.can_adapt
  ds = DavisDataset(shapes_root)
  runs = []
  for _ in range(2):
    state = seg.init_state(ds.frames("one-object"), name="one-object")
    seg.add_mask(state, ds.first_mask("one-object"))
    info = seg.adapt(state)
    assert info["steps"] == 2 and state.timer.seconds["adapt"] > 0
    runs.append((state.variables, np.stack([ids for _, ids in seg.propagate(state)])))
    if len(runs) == 1:
      compiled = jit_cache_size(seg.propagator.net)
  assert jit_cache_size(seg.propagator.net) == compiled  # the second video's variables: no recompile
  for x, y in zip(_leaves(runs[0][0]), _leaves(runs[1][0])):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(runs[0][1], runs[1][1])
  config.net = "identity"
  assert Segmenter(config).adapt(state) is None  # nothing to adapt


def test_cli_online_steps_writes_adapted_weights_and_times_them(tiny_weights, shapes_root, tmp_path, capsys):
  out, adapted = tmp_path / "out", tmp_path / "adapted"
  assert cli.main(["segment", "--davis", shapes_root, "--out", str(out), "--net", tiny_weights,
                   "--online-steps", "2", "--save-adapted", str(adapted), "--no-progress"]) == 0
  text = capsys.readouterr().out
  assert "one-object: adapted 2 steps" in text and "online_steps=2" in text
  assert any(line.startswith("adapt ") for line in text.splitlines())  # the timing table's row
  for seq, n in (("two-objects", 10), ("one-object", 8)):
    assert len([f for f in os.listdir(out / seq) if f.endswith(".png")]) == n
    name, meta, variables = weights.load_weights(adapted / f"{seq}.msgpack")
    assert name == TINY and meta["sequence"] == seq and meta["online_steps"] == 2
    assert "params" in variables
  # The identity net has nothing to adapt: said once, segmentation goes on.
  assert cli.main(["segment", "--davis", shapes_root, "--sequences", "one-object", "--out", str(tmp_path / "o2"),
                   "--net", "identity", "--online-steps", "2", "--no-progress"]) == 0
  assert "no weights to adapt" in capsys.readouterr().out
  assert cli.main(["segment", "--demo", "--out", str(tmp_path / "o3"), "--save-adapted", str(adapted)]) == 2
