"""Palette PNG, frame and DAVIS-root IO: round trips and every bad input of issue 2."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from vsreid_jax.data import DavisDataset, FolderFrames, VideoFrames, open_frames, read_mask, rgb_to_ids, write_mask
from vsreid_jax.data.palette import PALETTE
from vsreid_jax.errors import InputError


def test_palette_matches_davis_colours():
  # The first DAVIS colours: black, dark red, dark green, olive, navy.
  np.testing.assert_array_equal(PALETTE[:5], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]])
  assert len({tuple(c) for c in PALETTE}) == 256


def test_mask_round_trip_is_palette_png(tmp_path):
  mask = np.zeros((5, 7), np.uint8)
  mask[1:3, 2:5] = 1
  mask[4, 6] = 3
  path = tmp_path / "m.png"
  write_mask(path, mask)
  im = Image.open(path)
  assert im.mode == "P"
  assert im.getpalette()[3:6] == [128, 0, 0]
  np.testing.assert_array_equal(np.array(im), mask)  # how the official DAVIS tool reads it
  np.testing.assert_array_equal(read_mask(path), mask)


def test_grey_index_mask_is_accepted(tmp_path):
  mask = np.array([[0, 1], [2, 2]], np.uint8)
  Image.fromarray(mask, mode="L").save(tmp_path / "g.png")
  np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), mask)


def test_rgb_mask_is_rejected_with_conversion_hint(tmp_path):
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[1:3, 1:3] = PALETTE[1]
  Image.fromarray(rgb).save(tmp_path / "rgb.png")
  with pytest.raises(InputError, match=r"rgb\.png.*RGB colour image.*convert-mask"):
    read_mask(tmp_path / "rgb.png")
  np.testing.assert_array_equal(rgb_to_ids(rgb), (rgb[..., 0] > 0).astype(np.uint8))


def test_rgb_with_unknown_colour_cannot_be_converted():
  rgb = np.full((2, 2, 3), 7, np.uint8)
  with pytest.raises(InputError, match="not a DAVIS palette colour"):
    rgb_to_ids(rgb, "x.png")


def test_anti_aliased_mask_is_rejected(tmp_path):
  ramp = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (4, 1))  # 128 grey levels
  Image.fromarray(ramp, mode="L").save(tmp_path / "aa.png")
  with pytest.raises(InputError, match=r"aa\.png.*anti-aliased"):
    read_mask(tmp_path / "aa.png")


def test_ids_above_255_are_rejected(tmp_path):
  big = np.zeros((4, 4), np.uint16)
  big[0, 0] = 300
  cv2.imwrite(str(tmp_path / "big.png"), big)  # a 16-bit PNG
  with pytest.raises(InputError, match=r"big\.png.*300 > 255"):
    read_mask(tmp_path / "big.png")


def test_missing_and_corrupt_mask(tmp_path):
  with pytest.raises(InputError, match=r"nope\.png: mask file not found"):
    read_mask(tmp_path / "nope.png")
  (tmp_path / "bad.png").write_bytes(b"not a png")
  with pytest.raises(InputError, match=r"bad\.png: cannot read"):
    read_mask(tmp_path / "bad.png")


def _write_frames(folder, frames):
  os.makedirs(folder, exist_ok=True)
  for i, f in enumerate(frames):
    cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def test_folder_frames_are_lazy_rgb_and_named(tmp_path):
  frames = np.random.default_rng(0).integers(0, 255, (3, 6, 8, 3), dtype=np.uint8)
  _write_frames(tmp_path / "f", frames)
  src = open_frames(tmp_path / "f")
  assert isinstance(src, FolderFrames)
  assert len(src) == 3 and src.names == ["00000", "00001", "00002"] and src.size == (6, 8)
  np.testing.assert_array_equal(src[2], frames[2])  # PNG is lossless; RGB order kept


def test_unreadable_and_missing_frames_name_the_file(tmp_path):
  frames = np.zeros((2, 6, 8, 3), np.uint8)
  _write_frames(tmp_path / "f", frames)
  (tmp_path / "f" / "00001.png").write_bytes(b"garbage")
  src = FolderFrames(tmp_path / "f")
  with pytest.raises(InputError, match=r"00001\.png: cannot decode frame"):
    src[1]
  os.remove(tmp_path / "f" / "00001.png")
  with pytest.raises(InputError, match=r"00001\.png: frame file not found"):
    src[1]
  with pytest.raises(InputError, match="no frame images"):
    FolderFrames(tmp_path)  # holds only the sub-folder


def test_frame_of_other_size_is_an_error(tmp_path):
  _write_frames(tmp_path / "f", np.zeros((2, 6, 8, 3), np.uint8))
  cv2.imwrite(str(tmp_path / "f" / "00002.png"), np.zeros((5, 8, 3), np.uint8))
  src = FolderFrames(tmp_path / "f")
  with pytest.raises(InputError, match=r"00002\.png: frame is 8x5 but earlier frames are 8x6"):
    [src[i] for i in range(3)]


def test_video_frames_stream_and_seek(tmp_path):
  path = str(tmp_path / "v.avi")
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 16))
  for i in range(5):
    writer.write(np.full((16, 32, 3), 40 * i, np.uint8))
  writer.release()
  src = open_frames(path)
  assert isinstance(src, VideoFrames) and len(src) == 5 and src.size == (16, 32)
  assert src.names[4] == "00004"
  means = [src[i].mean() for i in (0, 1, 4, 2)]  # sequential reads, then a backward seek
  np.testing.assert_allclose(means, [0, 40, 160, 80], atol=3)


def test_bad_video_paths(tmp_path):
  with pytest.raises(InputError, match="no such frame folder or video"):
    open_frames(tmp_path / "missing.mp4")
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(InputError, match=r"notes\.txt: not a frame folder or a video"):
    open_frames(tmp_path / "notes.txt")
  (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
  with pytest.raises(InputError, match=r"broken\.mp4"):
    open_frames(tmp_path / "broken.mp4")


def test_davis_root_reading(shapes_root):
  ds = DavisDataset(shapes_root)
  assert ds.sequences("val") == ["two-objects", "one-object"]
  frames = ds.frames("two-objects")
  assert len(frames) == 10 and frames.size == (64, 96)
  first = ds.first_mask("two-objects")
  assert set(np.unique(first)) == {0, 1, 2}


def test_davis_root_errors(shapes_root, tmp_path):
  with pytest.raises(InputError, match="set file not found; available sets: val"):
    DavisDataset(shapes_root).sequences("test-dev")
  with pytest.raises(InputError, match="found resolutions: 480p; pass --resolution"):
    DavisDataset(shapes_root, resolution="Full-Resolution")
  with pytest.raises(InputError, match="DAVIS root not found"):
    DavisDataset(tmp_path / "none")
  root = tmp_path / "r"
  for d in ("JPEGImages/480p", "Annotations/480p", "ImageSets/2017"):
    (root / d).mkdir(parents=True)
  (root / "ImageSets/2017/val.txt").write_text("\n\n")
  with pytest.raises(InputError, match=r"val\.txt: set file is empty"):
    DavisDataset(root).sequences("val")
  (root / "ImageSets/2017/val.txt").write_text("ghost\n")
  with pytest.raises(InputError, match="lists sequence 'ghost'"):
    DavisDataset(root).sequences("val")


def test_frames_sort_naturally(tmp_path):
  frame = np.zeros((6, 8, 3), np.uint8)
  for i in (1, 2, 10, 9, 100):
    cv2.imwrite(str(tmp_path / f"frame{i}.png"), frame + i)
  src = FolderFrames(tmp_path)
  assert src.names == ["frame1", "frame2", "frame9", "frame10", "frame100"] and src.note is None
  assert src[3].max() == 10


def test_stray_image_beside_the_frames_is_left_out_with_a_note(tmp_path):
  _write_frames(tmp_path, np.zeros((4, 6, 8, 3), np.uint8))
  for i in range(4):
    os.replace(tmp_path / f"{i:05d}.png", tmp_path / f"{i:05d}.jpg")
  write_mask(tmp_path / "00000.png", np.ones((6, 8), np.uint8))  # the first-frame mask, misplaced
  (tmp_path / "._00001.jpg").write_bytes(b"macOS metadata")  # hidden files are never frames
  src = FolderFrames(tmp_path)
  assert src.names == ["00000", "00001", "00002", "00003"] and src.path(0).endswith("00000.jpg")
  assert src.note == f"{tmp_path}: using the 4 .jpg images as frames; ignoring 1 other image(s) (00000.png)"


def test_ambiguous_image_types_and_same_names_are_refused(tmp_path):
  _write_frames(tmp_path / "mixed", np.zeros((2, 6, 8, 3), np.uint8))
  cv2.imwrite(str(tmp_path / "mixed" / "00002.jpg"), np.zeros((6, 8, 3), np.uint8))
  with pytest.raises(InputError, match=r"mixed: holds images of several types \(2 \.png, 1 \.jpg\)"):
    FolderFrames(tmp_path / "mixed")
  _write_frames(tmp_path / "same", np.zeros((2, 6, 8, 3), np.uint8))
  for name in ("00001.jpg", "00001.jpeg", "00000.jpeg"):
    cv2.imwrite(str(tmp_path / "same" / name), np.zeros((6, 8, 3), np.uint8))
  (tmp_path / "same" / "00000.png").unlink()
  (tmp_path / "same" / "00001.png").unlink()
  with pytest.raises(InputError, match=r"same: 00001\.jpeg and 00001\.jpg share the name '00001'"):
    FolderFrames(tmp_path / "same")
