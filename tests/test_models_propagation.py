"""Two-stream propagation net N_mp: shapes, stream switch, jit, configs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsreid_jax import configs
from vsreid_jax.configs import propagation_lite_cpu
from vsreid_jax.configs import propagation_paper_r101
from vsreid_jax.models import propagation

S = 33  # crop size in tests


def tiny_model_config(streams=("rgb", "flow"), skip=True):
  m = propagation_lite_cpu.get_config().model
  m.streams = streams
  m.backbone.stage_sizes = (1, 1, 1, 1)
  m.backbone.width = 8
  m.aspp.branch_channels = 8
  m.aspp.out_channels = 8
  m.skip.channels = 4 if skip else 0
  m.skip.decoder_channels = 8
  return m


def inputs(n=2, seed=0):
  rng = np.random.RandomState(seed)
  image = jnp.asarray(rng.uniform(0, 255, (n, S, S, 3)), jnp.float32)
  flow = jnp.asarray(rng.randn(n, S, S, 2) * 5.0, jnp.float32)
  prob = jnp.asarray(rng.uniform(0, 1, (n, S, S, 1)), jnp.float32)
  return image, flow, prob


@pytest.mark.parametrize("streams", [("rgb", "flow"), ("rgb",)])
@pytest.mark.parametrize("skip", [True, False])
def test_output_shape(streams, skip):
  model = propagation.build_model(tiny_model_config(streams, skip))
  x = inputs()
  variables = propagation.numpy_init(model, *x)
  assert ("flow_stream" in variables["params"]) == ("flow" in streams)
  fn = propagation.make_propagation_fn(model, variables)
  logits = fn(*x)
  chex.assert_shape(logits, (2, S, S, 1))
  chex.assert_tree_all_finite(logits)


def test_single_stream_ignores_flow_two_streams_do_not():
  image, flow, prob = inputs()
  other_flow = flow * -3.0 + 1.0
  for streams, ignores in ((("rgb",), True), (("rgb", "flow"), False)):
    model = propagation.build_model(tiny_model_config(streams))
    variables = propagation.numpy_init(model, image, flow, prob)
    fn = propagation.make_propagation_fn(model, variables)
    a, b = fn(image, flow, prob), fn(image, other_flow, prob)
    if ignores:
      chex.assert_trees_all_equal(a, b)
    else:
      assert not np.allclose(a, b)


def test_prob_input_matters():
  image, flow, prob = inputs()
  model = propagation.build_model(tiny_model_config(("rgb",)))
  variables = propagation.numpy_init(model, image, flow, prob)
  fn = propagation.make_propagation_fn(model, variables)
  assert not np.allclose(fn(image, flow, prob), fn(image, flow, 1.0 - prob))


def test_jitted_fn_compiles_once_per_shape():
  model = propagation.build_model(tiny_model_config())
  x = inputs()
  variables = propagation.numpy_init(model, *x)

  traces = []

  class CountingModel:
    """Delegates to the model; counts Python executions, i.e. traces."""

    def apply(self, *args, **kwargs):
      traces.append(1)
      return model.apply(*args, **kwargs)

  fn = propagation.make_propagation_fn(CountingModel(), variables)
  for seed in range(3):
    fn(*inputs(seed=seed))
  assert len(traces) == 1
  if hasattr(fn.jitted, "_cache_size"):
    assert fn.jitted._cache_size() == 1  # pylint: disable=protected-access
  # New weights of the same shapes reuse the compiled function.
  new_vars = jax.tree_util.tree_map(lambda v: v * 0.5, variables)
  fn.jitted(new_vars, *x)
  assert len(traces) == 1
  fn(*inputs(n=1))  # a new batch size (object bucket) compiles once more
  assert len(traces) == 2


def test_train_mode_updates_batch_stats_and_uses_dropout():
  model = propagation.build_model(tiny_model_config())
  x = inputs()
  variables = propagation.numpy_init(model, *x)
  apply = jax.jit(lambda v, rng: model.apply(
      v, *x, train=True, mutable=["batch_stats"], rngs={"dropout": rng}))
  logits, updates = apply(variables, jax.random.PRNGKey(0))
  chex.assert_shape(logits, (2, S, S, 1))
  before = variables["batch_stats"]["rgb_stream"]["backbone"]["bn1"]["mean"]
  after = updates["batch_stats"]["rgb_stream"]["backbone"]["bn1"]["mean"]
  assert not np.allclose(before, after)


def test_rgb_normalisation_and_flow_scale_attributes():
  m = tiny_model_config(("rgb",))
  m.bgr = True
  m.rgb_mean = (104.0, 117.0, 123.0)
  m.rgb_std = (1.0, 1.0, 1.0)
  model = propagation.build_model(m)
  assert model.bgr and model.rgb_mean == (104.0, 117.0, 123.0)
  image, flow, prob = inputs()
  variables = propagation.numpy_init(model, image, flow, prob)
  # Reversing the input channels must change the output (the stream sees
  # ordered channels with per-channel statistics).
  fn = propagation.make_propagation_fn(model, variables)
  assert not np.allclose(fn(image, flow, prob), fn(image[..., ::-1], flow, prob))


def test_bad_streams_raise():
  model = propagation.build_model(tiny_model_config(("depth",)))
  with pytest.raises(ValueError, match="streams"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), *inputs())


@pytest.mark.parametrize("name", ["lite_cpu", "paper_r101"])
def test_configs_build_and_trace(name):
  config = configs.get("propagation", name)
  assert config.crop_margin == 0.15
  model = propagation.build_model(config.model)
  s = 65  # shapes only: no compile, no compute
  out = jax.eval_shape(
      lambda: model.init_with_output(
          jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
          jnp.zeros((1, s, s, 2)), jnp.zeros((1, s, s, 1)))[0])
  assert out.shape == (1, s, s, 1)


def test_paper_config_matches_reference_facts():
  c = propagation_paper_r101.get_config()
  assert c.crop_size == 449
  b = c.model.backbone
  assert (tuple(b.stage_sizes), b.block, b.output_stride, b.deep_stem) == (
      (3, 4, 23, 3), "bottleneck", 8, True)
  assert sorted(c.model.aspp.rates) == [1, 6, 12, 18, 24]
  assert c.model.aspp.branch_channels == c.model.aspp.out_channels == 512
  assert c.model.aspp.dropout_rate == 0.1
  assert tuple(c.model.streams) == ("rgb", "flow")
  assert c.model.bgr and tuple(c.model.rgb_mean) == (104.0, 117.0, 123.0)


def test_prior_residual_net_starts_as_the_warp_only_baseline():
  """With prior_residual, flax's init gives zero classifiers: the untrained net returns logit(prior)."""
  cfg = tiny_model_config(("rgb",))
  cfg.prior_residual = 0.02
  model = propagation.build_model(cfg)
  image, flow, prob = inputs()
  # The modules' own initialisers (not numpy_init), compiled once; the rbg generator compiles
  # several times faster than threefry on CPU.
  variables = jax.jit(lambda key: model.init(key, image, flow, prob))(jax.random.key(0, impl="rbg"))
  logits = propagation.make_propagation_fn(model, variables)(image, flow, prob)
  c = cfg.prior_residual
  p = np.clip(np.asarray(prob), c, 1 - c)
  np.testing.assert_allclose(np.asarray(logits), np.log(p) - np.log1p(-p), atol=1e-5)
  # Not the baseline by construction: other weights give other logits.
  moved = jax.tree_util.tree_map(lambda v: v + 0.1, variables)
  assert not np.allclose(propagation.make_propagation_fn(model, moved)(image, flow, prob), logits, atol=1e-2)


def _same_variables_fns(configs_, x):
  """Jitted nets of each model config, all with the variables of the first (same structure)."""
  models = [propagation.build_model(c) for c in configs_]
  variables = propagation.numpy_init(models[0], *x)
  return [propagation.make_propagation_fn(m, variables) for m in models]


def test_bgr_switch_reverses_the_channels_the_rgb_stream_sees():
  image, flow, prob = inputs()
  rgb_cfg, bgr_cfg = tiny_model_config(("rgb",)), tiny_model_config(("rgb",))
  bgr_cfg.bgr = True
  rgb_fn, bgr_fn = _same_variables_fns([rgb_cfg, bgr_cfg], (image, flow, prob))
  # A BGR net on an RGB image is the RGB net on the channel-reversed image, and differs from it
  # on the image as given.
  chex.assert_trees_all_close(bgr_fn(image, flow, prob), rgb_fn(image[..., ::-1], flow, prob), atol=1e-5)
  assert not np.allclose(bgr_fn(image, flow, prob), rgb_fn(image, flow, prob), atol=1e-3)


def test_flow_scale_multiplies_the_flow_the_flow_stream_sees():
  image, flow, prob = inputs()
  one, three = tiny_model_config(), tiny_model_config()
  one.flow_scale, three.flow_scale = 1.0, 3.0
  one_fn, three_fn = _same_variables_fns([one, three], (image, flow, prob))
  chex.assert_trees_all_close(three_fn(image, flow, prob), one_fn(image, 3.0 * flow, prob), atol=1e-4)
  assert not np.allclose(three_fn(image, flow, prob), one_fn(image, flow, prob), atol=1e-3)
