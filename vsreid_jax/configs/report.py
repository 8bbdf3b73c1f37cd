"""The static HTML report of a results folder (`vsreid report`, vsreid_jax/report).

Sizes keep a report of a whole DAVIS set (30 sequences of ~70 frames) around 10 MB. OpenCV sets
the encoder's bit rate from the frame size (its FFmpeg writer takes no bit-rate option), about
W x H / 8 bytes a frame whatever the fps: measured with VP9 on a 40-frame occlusion clip, 8.1 kB a
frame at 320x180 and 5.4 kB at 256x144, hence the width. Stills are JPEG thumbnails and plots PNGs
at screen resolution (~40-70 kB each).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      video_width=256,  # px; the overlay video is downscaled to this width (never upscaled)
      video_fps=12.0,  # DAVIS is 24 fps; half speed lets the eye follow a lost / re-found object
      thumb_width=160,  # px; JPEG stills of the retrieval frames
      jpeg_quality=80,  # thumbnails and the video poster
      plot_dpi=80,  # matplotlib figures: ~600 px wide, sharp on a normal screen
      plot_width_in=7.5,  # inches (x plot_dpi = pixels)
      overlay_alpha=0.5,  # tint of the objects over the frame (as the segment --overlay video)
  ))
