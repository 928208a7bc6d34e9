"""Numbers from outlines: per-object measurements (area, D, centre, Feret), per-image and pooled
statistics, and evaluation against ground truth (centre-in-contour rule, COCO AP, size accuracy)."""
