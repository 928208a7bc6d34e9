"""Prediction: sliced inference over images of any size, merging, contours, refinement, baseline.

Import submodules directly (inference.pipeline, segmodel.types, ...); this package imports
nothing heavy at start-up.
"""
