"""The embedded benchmark: generated visual reasoning questions in levels of difficulty.

`suite` draws the splits from the question families (`shapes`: CLEVR-Math-like, `charts`:
ChartQA-like, `tables`: TabMWP-like), which share the drawing and rationale helpers in `common`.
"""
