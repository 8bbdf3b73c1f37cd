"""What users of SAM 2, Cutie and XMem hand in: 0/255 masks, JPEG masks, masks of another size, a
frame to draw on (`vsreid extract-frame`), and videos whose length comes from the container."""
import os
from unittest import mock

import cv2
import numpy as np
import pytest
from PIL import Image

from vsreid_jax import cli
from vsreid_jax.data import read_mask, write_mask
from vsreid_jax.data.frames import VideoFrames, open_frames
from vsreid_jax.data.palette import read_prompt_mask
from vsreid_jax.errors import InputError


def _white_on_black(path, shape=(64, 96)):
  m = np.zeros(shape, np.uint8)
  m[10:30, 20:50] = 255
  Image.fromarray(m, mode="L").save(path)
  return m


def test_grey_0_255_mask_is_one_object_with_a_note(tmp_path):
  m = _white_on_black(tmp_path / "m.png")
  mask, notes = read_prompt_mask(tmp_path / "m.png", size=(64, 96))
  np.testing.assert_array_equal(mask, (m == 255).astype(np.uint8))
  assert len(notes) == 1 and "one object with id 1" in notes[0]


def test_palette_255_stays_void_not_an_object(tmp_path):
  m = np.zeros((8, 8), np.uint8)
  m[:2] = 1
  m[5:] = 255  # DAVIS's void label in an indexed PNG
  write_mask(tmp_path / "p.png", m)
  mask, notes = read_prompt_mask(tmp_path / "p.png")
  np.testing.assert_array_equal(mask, m)
  assert notes == []


@pytest.mark.parametrize("name", ["m.jpg", "m.png"])
def test_jpeg_mask_is_refused_with_the_reason(tmp_path, name):
  m = np.zeros((16, 16), np.uint8)
  m[4:12, 4:12] = 1
  Image.fromarray(m, mode="L").save(tmp_path / name, format="JPEG")  # m.png: a JPEG named .png
  with pytest.raises(InputError, match=r"JPEG.*blurs object edges"):
    read_mask(tmp_path / name)


def test_mask_of_other_size_is_refused_or_resized_by_nearest_neighbour(tmp_path):
  m = np.zeros((32, 48), np.uint8)
  m[8:24, 12:36] = 2
  write_mask(tmp_path / "small.png", m)
  with pytest.raises(InputError, match=r"48x32 but the frames are 96x64; pass --resize-mask"):
    read_prompt_mask(tmp_path / "small.png", size=(64, 96))
  mask, notes = read_prompt_mask(tmp_path / "small.png", size=(64, 96), resize=True)
  assert mask.shape == (64, 96) and set(np.unique(mask)) == {0, 2}  # ids never blended
  np.testing.assert_array_equal(mask[::2, ::2], m)
  assert "resized from 48x32 to 96x64" in notes[0]


def test_segment_accepts_a_white_mask_and_resize_mask(shapes_root, tmp_path, capsys):
  frames = os.path.join(shapes_root, "JPEGImages", "480p", "one-object")
  gt = read_mask(os.path.join(shapes_root, "Annotations", "480p", "one-object", "00000.png"))
  Image.fromarray((gt > 0).astype(np.uint8) * 255, mode="L").resize((48, 32), Image.NEAREST).save(tmp_path / "w.png")
  out = tmp_path / "out"
  assert cli.main(["segment", "--video", frames, "--mask", str(tmp_path / "w.png"), "--resize-mask",
                   "--out", str(out), "--no-progress", "--net", "identity", "--method", "propagate"]) == 0
  text = capsys.readouterr().out
  assert "one object with id 1" in text and "resized from 48x32 to 96x64" in text
  first = read_mask(out / "one-object" / "00000.png")
  assert set(np.unique(first)) == {0, 1}
  expected = np.asarray(Image.fromarray((gt > 0).astype(np.uint8)).resize((48, 32), Image.NEAREST)
                        .resize((96, 64), Image.NEAREST))
  np.testing.assert_array_equal(first, expected)


def _video(path, n=6, size=(40, 24)):
  w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.5, size)
  for i in range(n):
    w.write(np.full((size[1], size[0], 3), 30 * i, np.uint8))
  w.release()


def test_extract_frame_writes_the_frame_to_draw_on(tmp_path, capsys):
  _video(tmp_path / "v.avi")
  out = tmp_path / "f3.png"
  assert cli.main(["extract-frame", str(tmp_path / "v.avi"), "--frame", "3", "--out", str(out)]) == 0
  img = cv2.imread(str(out))
  assert img.shape == (24, 40, 3) and abs(img.mean() - 90) < 4
  assert "frame 3 of 6 (40x24)" in capsys.readouterr().out
  for bad, message in ((["--frame", "6"], "outside the video's frames 0..5"),
                       (["--frame", "0", "--out", str(tmp_path / "f.jpg")], "must name a .png"),
                       (["--frame", "0", "--out", str(tmp_path / "no" / "f.png")], "does not exist")):
    argv = ["extract-frame", str(tmp_path / "v.avi")] + bad
    if "--out" not in bad:
      argv += ["--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vsreid: error: ") and message in err and "\n" not in err


def test_video_length_and_rate_come_from_the_container(tmp_path):
  _video(tmp_path / "v.avi", n=6)
  with mock.patch.object(cv2.VideoCapture, "grab", side_effect=AssertionError("decoded to count")):
    src = open_frames(tmp_path / "v.avi")
  assert isinstance(src, VideoFrames) and len(src) == 6 and src.fps == pytest.approx(12.5)
