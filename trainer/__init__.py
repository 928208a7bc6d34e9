"""Training a personal Cascade Mask R-CNN from a few labelled crops (and the queue around it)."""
