"""YouTube-VOS / MOSE layouts (issue 14, item 3): the reader on a generated split folder (sparse
frame names, objects first appearing at different frames, sparse annotations), and
`vsreid segment --youtube-vos` writing the servers' layout and submission zip."""
import io
import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from vsreid_jax import cli
from vsreid_jax.data import read_mask, synthetic
from vsreid_jax.data.youtube_vos import YouTubeVOSDataset

FAST = ["--method", "propagate", "--net", "identity", "--scales", "0.15:33", "--flow", "dis-ultrafast",
        "--no-progress"]
NAMES = [f"{5 * t:05d}" for t in range(6)]  # the sparse valid set's names: 00000, 00005, ...


@pytest.fixture(scope="module")
def ytvos_root(tmp_path_factory):
  """Two videos: in "alpha" both objects are there from frame 00000; in "beta" object 1 first
  appears at 00005 and object 2 at 00015."""
  root = str(tmp_path_factory.mktemp("ytvos") / "valid")
  alpha = synthetic.moving_shapes(n_frames=6, n_objects=2, seed=0)
  frames, masks = synthetic.moving_shapes(n_frames=6, n_objects=2, seed=3)
  masks = masks.copy()
  masks[:1][masks[:1] == 1] = 0
  masks[:3][masks[:3] == 2] = 0
  return synthetic.write_youtube_vos_root(root, {"alpha": alpha, "beta": (frames, masks)})


def test_reader_finds_where_each_object_first_appears(ytvos_root, tmp_path):
  ds = YouTubeVOSDataset(ytvos_root)
  assert ds.videos() == ["alpha", "beta"]
  assert ds.frames("beta").names == NAMES
  assert ds.annotated_frames("alpha") == ["00000"] and ds.annotated_frames("beta") == ["00005", "00015"]
  assert ds.first_frames("alpha") == {1: "00000", 2: "00000"}
  assert ds.first_frames("beta") == {1: "00005", 2: "00015"}
  prompt = ds.prompt("beta")
  assert (prompt.frame_index, prompt.frame_name, prompt.later) == (1, "00005", {2: "00015"})
  assert ds.frames_from("beta", 1).names == NAMES[1:]
  # MOSE ships no meta.json: the same is read from the annotation PNGs.
  bare = str(tmp_path / "mose")
  shutil.copytree(ytvos_root, bare)
  os.remove(os.path.join(bare, "meta.json"))
  ds = YouTubeVOSDataset(bare)
  assert ds.meta is None and ds.videos() == ["alpha", "beta"]
  assert ds.first_frames("beta") == {1: "00005", 2: "00015"}


def test_segment_writes_the_servers_layout_and_zip(ytvos_root, tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["segment", "--youtube-vos", ytvos_root, "--out", str(out), "--zip"] + FAST) == 0
  text = capsys.readouterr().out
  ds = YouTubeVOSDataset(ytvos_root)
  for video in ("alpha", "beta"):
    pngs = sorted(f for f in os.listdir(out / "Annotations" / video) if not f.startswith("."))
    assert pngs == [n + ".png" for n in NAMES]  # every frame, the prompt frame's predecessors included
  np.testing.assert_array_equal(read_mask(out / "Annotations" / "alpha" / "00000.png"), ds.annotation("alpha", "00000"))
  # beta starts at 00005 (object 1); 00000 is background; object 2 joins at 00015, its first frame.
  assert not read_mask(out / "Annotations" / "beta" / "00000.png").any()
  np.testing.assert_array_equal(read_mask(out / "Annotations" / "beta" / "00005.png"), ds.annotation("beta", "00005"))
  for name in NAMES[:3]:
    assert 2 not in read_mask(out / "Annotations" / "beta" / f"{name}.png")
  late = read_mask(out / "Annotations" / "beta" / "00015.png")
  np.testing.assert_array_equal(late == 2, ds.annotation("beta", "00015") == 2)  # its mask where it is given
  assert 1 in late  # object 1 is still propagated from 00005 there
  _, gt = synthetic.moving_shapes(n_frames=6, n_objects=2, seed=3)
  for t, name in ((4, "00020"), (5, "00025")):  # and object 2 is propagated from 00015
    pred = read_mask(out / "Annotations" / "beta" / f"{name}.png") == 2
    assert (pred & (gt[t] == 2)).sum() > 0.6 * (pred | (gt[t] == 2)).sum(), name
  assert read_mask(out / "Annotations" / "beta" / "00025.png").max() == 2
  assert "note: beta: segmented from frame 00005" in text and "2 from frame 00015" in text
  assert "join at their first annotated frame" in text and "NOT segmented" not in text
  # The submission zip: Annotations/<video>/<frame>.png palette PNGs, nothing else.
  with zipfile.ZipFile(out / "submission.zip") as z:
    assert sorted(z.namelist()) == sorted(f"Annotations/{v}/{n}.png" for v in ("alpha", "beta") for n in NAMES)
    with Image.open(io.BytesIO(z.read("Annotations/beta/00005.png"))) as im:
      assert im.mode == "P"
  assert f"submission: {out / 'submission.zip'}" in text


def test_broken_meta_json_is_one_line(ytvos_root, tmp_path, capsys):
  root = str(tmp_path / "valid")
  shutil.copytree(ytvos_root, root)
  with open(os.path.join(root, "meta.json"), "w") as f:
    f.write('{"videos": {"alpha": {"objects": {"one": {"frames": ["00000"]}}}}}')
  assert cli.main(["segment", "--youtube-vos", root, "--out", str(tmp_path / "out")] + FAST) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "meta.json: not a YouTube-VOS meta.json" in err and "\n" not in err
  assert cli.main(["segment", "--demo", "--out", str(tmp_path / "out"), "--zip"] + FAST) == 2
  assert "--zip: only with --davis or --youtube-vos" in capsys.readouterr().err


def test_out_at_the_root_is_refused_so_annotations_are_never_overwritten(ytvos_root, tmp_path, capsys, snapshot):
  before = snapshot(ytvos_root)
  assert cli.main(["segment", "--youtube-vos", ytvos_root, "--out", ytvos_root] + FAST) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("vsreid: error: ") and "inside the input folder" in err and "\n" not in err
  assert snapshot(ytvos_root) == before
