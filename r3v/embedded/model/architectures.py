"""Tiny random models of the real families, built from configs with a local tokenizer.

`build_tiny(architecture, out)` writes a Hugging Face folder for LLaVA, Qwen2-VL, Qwen2.5-VL or
Idefics3 (SmolVLM's architecture): the architecture's own model class, processor and image processor,
a chat template in that architecture's shape (Qwen's ChatML with `<|vision_start|><|image_pad|>
<|vision_end|>` and its default system turn; Idefics3's `User:<image>...<end_of_utterance>`), and
the embedded byte-level BPE tokenizer extended with the architecture's special tokens. The weights are
random: these folders exist to prove that every architecture goes through the same loading, rendering,
sampling, judging, label-masking, LoRA and training code as a real checkpoint of it would (no
model hub here), not to learn anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from r3v.config import EmbeddedModelConfig
from r3v.embedded.model.build import CHAT_TEMPLATE, END_OF_TURN, build_tokenizer

ARCHITECTURES = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3")

QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IDEFICS3_TOKENS = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}"
    "{% if m['content'] is string %}: {{ m['content'] }}{% else %}"
    "{% if m['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)

# Tiny sizes shared by the families (the embedded tasks' images are 64 px).
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
IMAGE = 64


def _tokenizer(extra: list[str], eos: str, template: str):
    tok = build_tokenizer(EmbeddedModelConfig())
    tok.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    tok.eos_token = eos
    tok.chat_template = template
    return tok


def _ids(tok, names) -> dict[str, int]:
    return {n: tok.convert_tokens_to_ids(n) for n in names}


def _qwen(architecture: str):
    import transformers as tf

    tok = _tokenizer(QWEN_TOKENS, "<|im_end|>", QWEN_TEMPLATE)
    tok.image_token, tok.video_token = "<|image_pad|>", "<|video_pad|>"  # the processor reads them off the tokenizer
    ids = _ids(tok, QWEN_TOKENS + ["<|im_end|>", "<pad>", "<s>"])
    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    text = dict(TEXT, vocab_size=len(tok), max_position_embeddings=2048, bos_token_id=ids["<s>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<pad>"],
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]})
    # 8-px patches merged 2x2: a 64-px image is 8x8 patches, 16 image tokens
    patch, merge = 8, 2
    if architecture == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=TEXT["hidden_size"], num_heads=2, mlp_ratio=2,
                      patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2)
        config_cls, model_cls, proc_cls = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    else:
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=TEXT["hidden_size"], num_heads=2,
                      patch_size=patch, spatial_merge_size=merge, temporal_patch_size=2, window_size=32,
                      fullatt_block_indexes=[1])
        config_cls, model_cls, proc_cls = (tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration,
                                           tf.Qwen2_5_VLProcessor)
    config = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    pixels = IMAGE * IMAGE
    image_processor = tf.Qwen2VLImageProcessorPil(patch_size=patch, merge_size=merge, temporal_patch_size=2,
                                                  min_pixels=pixels, max_pixels=pixels,
                                                  size={"shortest_edge": pixels, "longest_edge": pixels})
    try:  # transformers 5 builds every Qwen-VL processor with a video processor, which needs torchvision
        video_processor = tf.Qwen2VLVideoProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2)
    except ImportError as e:
        raise ImportError(f"{architecture}: the processor needs torchvision (its video processor): {e}") from None
    processor = proc_cls(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                         chat_template=QWEN_TEMPLATE)
    return model_cls(config), processor, ids["<|im_end|>"], ids["<pad>"]


def _idefics3():
    import transformers as tf

    tok = _tokenizer(IDEFICS3_TOKENS, "<end_of_utterance>", IDEFICS3_TEMPLATE)
    ids = _ids(tok, IDEFICS3_TOKENS + ["<image>", "<pad>", "<s>"])
    patch, scale = 8, 2
    config = tf.Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE, patch_size=patch),
        text_config=dict(TEXT, model_type="llama", vocab_size=len(tok), max_position_embeddings=2048,
                         bos_token_id=ids["<s>"], eos_token_id=ids["<end_of_utterance>"], pad_token_id=ids["<pad>"]),
        image_token_id=ids["<image>"], scale_factor=scale, tie_word_embeddings=True, pad_token_id=ids["<pad>"])
    image_processor = tf.Idefics3ImageProcessorPil(size={"longest_edge": IMAGE}, max_image_size={"longest_edge": IMAGE},
                                                   do_image_splitting=False)
    processor = tf.Idefics3Processor(image_processor=image_processor, tokenizer=tok, chat_template=IDEFICS3_TEMPLATE,
                                     image_seq_len=(IMAGE // patch) ** 2 // scale ** 2)
    return tf.Idefics3ForConditionalGeneration(config), processor, ids["<end_of_utterance>"], ids["<pad>"]


def _llava():
    import transformers as tf

    tok = _tokenizer([], END_OF_TURN, CHAT_TEMPLATE)
    ids = _ids(tok, ["<image>", END_OF_TURN, "<pad>", "<s>"])
    config = tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, image_size=IMAGE, patch_size=8, projection_dim=32),
        text_config=tf.LlamaConfig(**TEXT, vocab_size=len(tok), max_position_embeddings=2048, bos_token_id=ids["<s>"],
                                   eos_token_id=ids[END_OF_TURN], pad_token_id=ids["<pad>"], tie_word_embeddings=True),
        image_token_id=ids["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=True, pad_token_id=ids["<pad>"])
    image_processor = tf.CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    processor = tf.LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                  chat_template=CHAT_TEMPLATE)
    return tf.LlavaForConditionalGeneration(config), processor, ids[END_OF_TURN], ids["<pad>"]


def build_tiny(architecture: str, out: str | Path, seed: int = 0) -> Path:
    """A random tiny model of `architecture` (one of ARCHITECTURES) with its processor, saved in HF layout."""
    import torch

    from r3v.models import save_model

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: one of {ARCHITECTURES}")
    torch.manual_seed(seed)
    model, processor, eos, pad = {"llava": _llava, "idefics3": _idefics3}.get(architecture, lambda: _qwen(architecture))()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    out = Path(out)
    save_model(model.eval(), processor, out, extra_files={"r3v_tiny_architecture.json": json.dumps(
        {"architecture": architecture, "parameters": sum(p.numel() for p in model.parameters())})})
    return out
