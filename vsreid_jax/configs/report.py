"""The static HTML report of a results folder (`vsreid report`, vsreid_jax/report).

Sizes are chosen so that a report of a whole DAVIS set (30 sequences of ~70 frames) stays a few
MB and loads at once from disk: the overlay video is re-encoded at a small width (VP9 at 320 px is
~20-60 kB a sequence), stills are JPEG thumbnails, and plots are PNGs at screen resolution.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      video_width=320,  # px; the overlay video is downscaled to this width (never upscaled)
      video_fps=12.0,  # DAVIS is 24 fps; half speed lets the eye follow a lost / re-found object
      thumb_width=160,  # px; JPEG stills of the retrieval frames
      jpeg_quality=80,  # thumbnails and the video poster
      plot_dpi=80,  # matplotlib figures: ~600 px wide, sharp on a normal screen
      plot_width_in=7.5,  # inches (x plot_dpi = pixels)
      overlay_alpha=0.5,  # tint of the objects over the frame (as the segment --overlay video)
  ))
