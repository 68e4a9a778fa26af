"""The models the project builds itself (no model hub here).

- `build`: the embedded tiny VLM (byte-level BPE tokenizer, ViT, projector, Llama LM) in Hugging
  Face layout, cached by its config, pretrained at build time by `vision` (dense patch labels) and
  `reading` (reading scenes aloud, sums, text);
- `architectures`: tiny random models of the real architectures (LLaVA, Qwen2-VL, Qwen2.5-VL,
  Idefics3), for proving that each goes through the same code as a real checkpoint.
"""
