"""Reading runs after the fact; nothing in the loop depends on it.

- `report`: a run's results table (the `metrics` view);
- `experiment`, `replicates`: arms side by side (seed, STaR, R3V, ablations) over seeds;
- `error_kinds`, `diagnostics`: why rationales are wrong, and whether the model uses the image;
- `judge_check`: the judge against a labelled corpus of outputs.
"""
