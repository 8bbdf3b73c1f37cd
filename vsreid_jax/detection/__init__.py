"""Faster R-CNN FPN detector in flax (the box detector of Algorithm 2): `Detector` in detector.py."""
