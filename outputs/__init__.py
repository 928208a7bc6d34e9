"""What a user gets back: overlay and histogram pictures, CSV tables, LabelMe JSON, summaries, and the
lab formats (label TIFF, ImageJ ROI sets, COCO JSON, Excel workbooks)."""
