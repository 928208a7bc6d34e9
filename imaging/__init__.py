"""Pixels and scales in: plain images, microscope files and height maps -> uint8 RGB with the scale
the file carries, and the info bar / scale bar burned into flattened SEM exports.

Below annotations: no LabelMe, no measurement, no torch; imports only core.
"""
