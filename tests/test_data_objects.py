"""Object cut-outs and compositing (data/objects.py); box geometry is tests/test_geometry.py."""
import numpy as np

from vsreid_jax.data import objects


def test_paste_occludes_and_clips_at_the_border():
  image = np.zeros((20, 30, 3), np.uint8)
  ids = np.zeros((20, 30), np.uint8)
  ids[5:15, 5:15] = 1
  obj = objects.Cutout(np.full((6, 8, 3), 200, np.uint8), np.ones((6, 8), np.float32))
  out, out_ids = objects.paste(image, ids, obj, 10, 8, new_id=2)
  assert (out_ids[8:14, 10:18] == 2).all()
  assert (out_ids[5:8, 5:15] == 1).all()  # above the pasted object: still the target
  assert (out[8:14, 10:18] == 200).all() and out[0, 0, 0] == 0
  # Half outside the right border: only the visible columns are drawn.
  _, ids2 = objects.paste(image, ids, obj, 26, 0, new_id=3)
  assert (ids2 == 3).sum() == 6 * 4
  # Wholly outside: nothing changes.
  _, ids3 = objects.paste(image, ids, obj, 40, 0, new_id=3)
  np.testing.assert_array_equal(ids3, ids)


def test_bank_reads_boxes_and_cutouts(shapes_root):
  bank = objects.ObjectBank([(shapes_root, "480p")], subset="val")
  assert {s for _, s in bank.sequences} == {"two-objects", "one-object"}
  refs = bank.refs_of(0, "two-objects")
  assert {r.obj_id for r in refs} == {1, 2}
  ref = refs[0]
  cut = bank.cutout(ref)
  x0, y0, x1, y1 = ref.box
  assert cut.alpha.shape == (y1 - y0, x1 - x0) and cut.alpha.max() == 1.0
  assert bank.label(ref).endswith(f"two-objects/{ref.obj_id}")
  only = objects.ObjectBank([(shapes_root, "480p")], subset="val", exclude=("two-objects",))
  assert [s for _, s in only.sequences] == ["one-object"]
