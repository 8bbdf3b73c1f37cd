"""Readers and writers for frames, masks and DAVIS-layout roots."""
from vsreid_jax.data.davis import DavisDataset
from vsreid_jax.data.frames import ArrayFrames, FolderFrames, VideoFrames, open_frames, read_image
from vsreid_jax.data.palette import PALETTE, read_mask, rgb_to_ids, write_mask
