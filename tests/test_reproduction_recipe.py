"""The README's "Reproducing the paper" recipe (issue 15, item 4), every command run as written.

The test reads the recipe block from README.md and runs each command line in order, in a folder
holding what the user downloads, generated tiny: a DAVIS-2017-layout root `DAVIS/` (train, val and
test-dev sets; test-dev with first-frame masks only), a YouTube-VOS train-layout root, and the two
torchvision weight files saved from untrained torchvision models of the same layout as the real
ones (ResNet-101 and Faster R-CNN ResNet-50 FPN, reduced to one block per stage). Only overrides
that make the run tiny are appended to each line (one block per stage, 33-pixel crops, one step),
so README and test cannot drift apart.
"""
import os
import re
import runpy
import shlex
import sys
import zipfile

import numpy as np
import pytest

from vsreid_jax import cli
from vsreid_jax.data import synthetic
from vsreid_jax.models import import_torch
from vsreid_jax.models.weights import load_weights

torch = pytest.importorskip("torch", reason="torch not installed: pip install -e '.[test]'")
try:
  torchvision = import_torch.import_torchvision()
except ImportError:
  pytest.skip("torchvision not installed", allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Reproducing the paper"
BLOCKS = (1, 1, 1, 1)  # one residual block per stage: the layout of ResNet-101 / -50, shallow

# Appended to each command of the recipe: the same nets, tiny, one step.
TINY_NMP = [f"model.backbone.stage_sizes={BLOCKS}", "crop_size=33", "model.aspp.branch_channels=8",
            "model.aspp.out_channels=8", "data.source=python", "data.batch_per_device=1",
            "data.num_val_examples=2", "data.cache_dir=cache", "train.steps=1", "train.log_every=1",
            "train.checkpoint_every=1", "train.eval_every=1"]
TINY_DETECTOR = [f"model.backbone.stage_sizes={BLOCKS}", "model.fpn_channels=16", "model.representation_size=32",
                 "input.height=64", "input.width=96", "rpn.pre_nms_top_n_train=40", "rpn.pre_nms_top_n_test=40",
                 "rpn.post_nms_top_n_train=30", "rpn.post_nms_top_n_test=30", "rpn.batch_size_per_image=32",
                 "roi.batch_size_per_image=16", "roi.detections_per_img=8", "roi.max_candidates=64",
                 "data.batch_size=1", "data.max_boxes=4", "data.prefetch=1", "optimizer.warmup_steps=0",
                 "train.steps=1", "train.log_every=1", "train.checkpoint_every=1"]
TINY_REID = ["crop_size=32", "model.backbone.width=8", "model.embed_dim=16", "data.frame_height=48",
             "data.identities_per_batch=2", "data.crops_per_identity=2", "data.instance_pairs_per_batch=1",
             "data.background_per_batch=1", "data.partial_per_batch=1", "optimizer.warmup_steps=0",
             "train.steps=1", "train.log_every=1", "train.checkpoint_every=1"]


def recipe():
  """The command lines of the README's recipe block: continuations joined, comments dropped."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  assert SECTION in text, f"README.md has no {SECTION!r} section"
  block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.S).group(1)
  lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]
  return [shlex.split(line) for line in lines]


def tiny(argv):
  """`argv` with the overrides that make its run tiny."""
  if argv[:2] != ["vsreid", "train"]:
    return argv + (["--no-progress"] if argv[:2] == ["vsreid", "segment"] else [])
  net = argv[argv.index("--net") + 1] if "--net" in argv else "propagation"
  extra = {"propagation": TINY_NMP, "detector": TINY_DETECTOR, "reid": TINY_REID}[net]
  return argv + [a for kv in extra for a in ("--override", kv)] + ["--no-progress"]


def run(argv):
  """Runs one command line of the recipe in this process: `vsreid ...` or `python script ...`."""
  if argv[0] == "vsreid":
    assert cli.main(argv[1:]) == 0, argv
  else:
    assert argv[0] == "python", argv
    saved = sys.argv
    sys.argv = argv[1:]
    try:
      runpy.run_path(os.path.join(REPO, argv[1]), run_name="__main__")
    finally:
      sys.argv = saved


def option(argv, flag):
  return argv[argv.index(flag) + 1]


def overrides(argv):
  return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--override")


def _torch_resnet(**kw):
  return torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, list(BLOCKS), **kw)


def write_downloads(folder, names):
  """The files the user downloads, generated: DAVIS/, youtube-vos/train/ and the two torchvision
  weight files named in the recipe (untrained models of the real layout, shallow)."""
  clip = lambda seed, n, t=4: synthetic.moving_shapes(n_frames=t, height=48, width=64, n_objects=n, seed=seed)
  davis = os.path.join(folder, "DAVIS")
  synthetic.write_davis_root(davis, {"t1": clip(0, 2), "t2": clip(1, 1)}, subset="train")
  synthetic.write_davis_root(davis, {"v1": clip(2, 2)}, subset="val")
  synthetic.write_davis_root(davis, {"d1": clip(3, 2, 5)}, subset="test-dev")
  ann = os.path.join(davis, "Annotations", "480p", "d1")
  for name in sorted(os.listdir(ann))[1:]:  # test-dev ships the first frame's masks only
    os.remove(os.path.join(ann, name))
  synthetic.write_youtube_vos_root(os.path.join(folder, "youtube-vos", "train"), {"y1": clip(4, 2)}, every_frame=True)
  torch.manual_seed(0)
  torch.save(_torch_resnet().state_dict(), os.path.join(folder, names["resnet"]))
  det = torchvision.models.detection
  body = _torch_resnet(norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)
  backbone = det.backbone_utils.BackboneWithFPN(
      body, {f"layer{i}": str(i - 1) for i in range(1, 5)}, [256, 512, 1024, 2048], 16,
      extra_blocks=torchvision.ops.feature_pyramid_network.LastLevelMaxPool())
  coco_classes = 91
  model = det.FasterRCNN(backbone, num_classes=None, box_head=det.faster_rcnn.TwoMLPHead(16 * 7 * 7, 32),
                         box_predictor=det.faster_rcnn.FastRCNNPredictor(32, coco_classes))
  torch.save(model.state_dict(), os.path.join(folder, names["coco"]))


def test_readme_recipe_runs_every_stage_in_order(tmp_path, monkeypatch):
  commands = recipe()
  trains = [c for c in commands if c[:2] == ["vsreid", "train"]]
  nmp = [c for c in trains if "--net" not in c or option(c, "--net") == "propagation"]
  # The recipe the issue asks for, in order: ImageNet import + the four stages of paper_r101, the
  # export, the COCO detector, the ReID net, then DAVIS 2017 test-dev with --preset paper, zipped.
  assert [option(c, "--stage") for c in nmp] == ["rgb_static", "rgb", "flow", "joint"]
  assert all(option(c, "--config").startswith("paper_r101") for c in nmp)
  assert "init.torch_checkpoint" in overrides(nmp[0]) and "--init-from" not in nmp[0]
  assert [option(c, "--init-from") for c in nmp[1:]] == [option(c, "--workdir") for c in nmp[:-1]]
  for c in trains:
    assert any(a.startswith("davis:DAVIS:480p:train") for a in c) and "--val-dataset" in c
  det, = [c for c in trains if "--net" in c and option(c, "--net") == "detector"]
  reid, = [c for c in trains if "--net" in c and option(c, "--net") == "reid"]
  segments = [c for c in commands if c[:2] == ["vsreid", "segment"]]
  test_dev = segments[-1]
  assert option(test_dev, "--set") == "test-dev" and option(test_dev, "--preset") == "paper" and "--zip" in test_dev
  assert commands.index(nmp[-1]) < commands.index(det) < commands.index(reid) < commands.index(test_dev)
  names = dict(resnet=overrides(nmp[0])["init.torch_checkpoint"], coco=overrides(det)["init"])
  assert names == dict(resnet="resnet101-63fe2227.pth", coco="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")

  write_downloads(str(tmp_path), names)
  monkeypatch.chdir(tmp_path)
  for argv in commands:
    run(tiny(argv))

  # Stage 1 imported the ImageNet weights: the RGB stream's stem is torchvision's after one SGD step.
  torch_conv1 = torch.load(names["resnet"])["conv1.weight"].numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
  _, _, nmp_vars = load_weights(option(commands[commands.index(nmp[-1]) + 1], "--out"))
  ours = np.asarray(nmp_vars["params"]["rgb_stream"]["backbone"]["conv1"]["kernel"], np.float32)
  assert ours.shape[:2] == torch_conv1.shape[:2] and ours.shape[3] == torch_conv1.shape[3]
  np.testing.assert_allclose(ours[:, :, :3], torch_conv1, atol=2e-3)  # 4 stages of one small step each
  assert set(nmp_vars["params"]) >= {"rgb_stream", "flow_stream"}
  # The detector took the COCO tensors (its stem is frozen: equal to float16 rounding) ...
  _, _, det_vars = load_weights(option(det, "--export"))
  coco = torch.load(names["coco"])
  np.testing.assert_allclose(np.asarray(det_vars["params"]["backbone"]["conv1"]["kernel"], np.float32),
                             coco["backbone.body.conv1.weight"].numpy().transpose(2, 3, 1, 0), atol=1e-3)
  # ... and a class-agnostic predictor of its own (2 classes, not COCO's 91).
  assert det_vars["params"]["box_head"]["cls_score"]["kernel"].shape[-1] == 2
  assert os.path.isfile(option(reid, "--export"))
  # The submission: every frame of every test-dev sequence, <sequence>/<frame>.png at the zip's root.
  out = option(test_dev, "--out")
  with zipfile.ZipFile(os.path.join(out, "submission.zip")) as z:
    assert sorted(z.namelist()) == [f"d1/{t:05d}.png" for t in range(5)]
  # The val check scored its results (the official protocol's CSV files).
  val = [c for c in segments if option(c, "--set") == "val"]
  for c in val:
    assert os.path.isfile(os.path.join(option(c, "--out"), "global_results-val.csv"))
