"""The four dimensions every reward scores (paper Sec. 4.1: VideoScore's visual quality, temporal
consistency, dynamic degree and text-to-video alignment), in the order of Table 1's columns.

A module of its own, without torch, so that the report and the toy world name the dimensions
without loading a reward (rewards.py re-exports them as rewards.DIMENSIONS):

    python -c "from analysis.dimensions import DIMENSIONS; print(DIMENSIONS)"
"""
DIMENSIONS = ("visual_quality", "temporal_consistency", "dynamic_degree", "text_alignment")
