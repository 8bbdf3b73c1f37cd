"""ReID net, metric loss and the runtime Embedder: norms, loss ordering, crop parity, one compile."""
import jax
import jax.numpy as jnp
import numpy as np

from vsreid_jax import configs
from vsreid_jax.models.propagation import numpy_init
from vsreid_jax import geometry
from vsreid_jax.reid import losses
from vsreid_jax.reid import model as model_lib
from vsreid_jax.reid.embedder import Embedder
from vsreid_jax.utils import jit_cache_size

S = 32  # crop size in tests


def tiny_config():
  c = configs.get("reid", "reid_lite_cpu")
  c.crop_size = S
  c.model.backbone.stage_sizes = (1, 1, 1, 1)
  c.model.backbone.width = 8
  c.model.embed_dim = 16
  return c


def tiny_embedder(config=None):
  c = config or tiny_config()
  model = model_lib.build_model(c.model)
  return Embedder(c, numpy_init(model, model_lib.dummy_crops(c.crop_size), train=False), "tiny")


def test_embeddings_are_unit_norm_with_the_configured_size():
  c = tiny_config()
  model = model_lib.build_model(c.model)
  variables = numpy_init(model, model_lib.dummy_crops(S), train=False)
  crops = np.random.RandomState(0).randint(0, 256, (5, S, S, 3)).astype(np.uint8)
  e = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, crops))
  assert e.shape == (5, c.model.embed_dim)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_supcon_is_lower_for_the_right_identities_than_shuffled():
  rng = np.random.RandomState(0)
  centres = rng.randn(4, 16)
  labels = np.repeat(np.arange(4), 3)
  emb = centres[labels] + 0.3 * rng.randn(12, 16)
  emb = np.concatenate([emb, rng.randn(4, 16)])  # background crops: nobody's positive
  emb = jnp.asarray(emb / np.linalg.norm(emb, axis=1, keepdims=True), jnp.float32)
  labels = np.concatenate([labels, np.full(4, losses.NO_IDENTITY)])
  right = float(losses.supcon_loss(emb, jnp.asarray(labels), 0.1))
  shuffled = labels.copy()
  shuffled[:12] = rng.permutation(labels[:12])
  wrong = float(losses.supcon_loss(emb, jnp.asarray(shuffled), 0.1))
  assert np.isfinite(right) and right < wrong - 1.0
  m = jax.device_get(losses.batch_metrics(emb, jnp.asarray(labels)))
  assert m["rank1"] == 1.0 and m["pos_sim"] > m["neg_sim"]


def test_unlabelled_crops_are_never_anchors_or_positives():
  labels = jnp.asarray([0, 0, losses.NO_IDENTITY, losses.NO_IDENTITY])
  pos = np.asarray(losses.positive_mask(labels))
  assert pos[0, 1] and pos[1, 0] and not pos[2:].any() and not pos[:, 2:].any()


def test_embed_crops_the_boxes_like_crop_resize_with_the_margin():
  emb = tiny_embedder()
  c = emb.config
  rng = np.random.RandomState(1)
  images = rng.randint(0, 256, (2, 60, 90, 3)).astype(np.uint8)
  boxes = np.array([[[5, 4, 40, 50], [30.5, 10, 88, 58], [0, 0, 90, 60]],
                    [[10, 10, 20, 30], [50, 2, 70, 20], [1, 1, 12, 12]]], np.float32)
  got = emb.embed(images, boxes)
  assert got.shape == (2, 3, c.model.embed_dim) and got.dtype == np.float32
  for b in range(2):  # the reference crops, one box at a time, outside the jitted function
    crops = jnp.stack([geometry.crop_resize(jnp.asarray(images[b], jnp.float32),
                                             geometry.enlarge_box(jnp.asarray(box), c.crop_margin, 60, 90), S)
                       for box in boxes[b]])
    want = jax.jit(lambda v, x: emb.model.apply(v, x, train=False))(emb.variables, crops)
    np.testing.assert_allclose(got[b], want, atol=1e-4)


def test_one_compile_for_any_number_of_boxes_in_a_bucket():
  emb = tiny_embedder()
  images = np.random.RandomState(2).randint(0, 256, (1, 48, 64, 3)).astype(np.uint8)
  first = None
  for m in (1, 5, 8, 3):
    boxes = np.tile(np.array([[4, 4, 30, 40]], np.float32), (1, m, 1))
    out = emb.embed(images, boxes)
    assert out.shape == (1, m, emb.embed_dim)
    first = out[0, 0] if first is None else first
    np.testing.assert_allclose(out[0, 0], first, atol=1e-5)  # padding does not change the real boxes
  assert emb.bucket(8) == 8 and emb.bucket(9) == 16 and emb.bucket(65) == 128
  assert jit_cache_size(emb.jitted) == 1
  assert emb.embed(images, np.zeros((1, 0, 4), np.float32)).shape == (1, 0, emb.embed_dim)
  assert emb.rho_occ == 0.3 and 0.0 < emb.rho_reid < 1.0
