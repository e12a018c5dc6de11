"""Galaxy segmentation with OneFormer over Galaxy Zoo 2."""
