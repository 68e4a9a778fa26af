"""The embedded tiny VLM: LLaVA layout (CLIP vision tower + projector + Llama LM), built from a config.

Its tokenizer is a byte-level BPE trained here with `tokenizers` on the embedded tasks' text and
every prompt template, with a ChatML-style chat template. The result is a plain Hugging Face
folder (config.json, model.safetensors, tokenizer and processor files) that loads with
`AutoModelForImageTextToText` / `AutoProcessor` offline and with vLLM. At build time its vision
tower is pretrained on dense patch labels (r3v/embedded/model/vision.py), its LM on text-only sums,
copying and look-ups, then its projector and LM on reading scenes aloud (r3v/embedded/model/reading.py):
the stand-ins for a real VLM's pretrained CLIP, pretrained LM and alignment stage; nothing of the
questions' reasoning. It is built once per config and cached
under `model.cache_dir`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from r3v import prompts
from r3v.config import EmbeddedBenchConfig, EmbeddedModelConfig
from r3v.embedded.bench import suite

log = logging.getLogger(__name__)

BUILD_VERSION = "4"  # 2: the vision tower is pretrained at build time; 3: chart and table families;
# 4: the levelled (easy-to-hard) benchmark's wording
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<image>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
END_OF_TURN = "<|im_end|>"


def _key(mcfg: EmbeddedModelConfig) -> str:
    blob = json.dumps([BUILD_VERSION, dataclasses.asdict(mcfg)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_tokenizer(mcfg: EmbeddedModelConfig):
    """Byte-level BPE over the embedded tasks' wording and every prompt template.

    The corpus is fixed (its own generator seed): the tasks' vocabulary does not depend on a
    run's task seed or split sizes, so one build serves every run with the same model config.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=mcfg.vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    from r3v.embedded.model.reading import READ_PROMPT

    text = (suite.corpus(EmbeddedBenchConfig(image_size=mcfg.image_size))
            + (prompts.vocabulary_text() + [READ_PROMPT]) * 20)
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token=END_OF_TURN, pad_token="<pad>",
        unk_token=None, extra_special_tokens={"image_token": "<image>"}, padding_side="left",
        chat_template=CHAT_TEMPLATE, model_max_length=mcfg.max_positions,
    )


def build(mcfg: EmbeddedModelConfig, out: Path) -> Path:
    """Build the random-init tiny VLM and its processor into `out` (HF layout, vLLM key names)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from r3v.embedded.model.reading import pretrain_reading, pretrain_text
    from r3v.embedded.model.vision import pretrain_vision
    from r3v.models import save_model

    tokenizer = build_tokenizer(mcfg)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": mcfg.image_size}, crop_size={"height": mcfg.image_size, "width": mcfg.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=mcfg.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=mcfg.vision_hidden, intermediate_size=4 * mcfg.vision_hidden,
            num_hidden_layers=mcfg.vision_layers, num_attention_heads=mcfg.vision_heads,
            image_size=mcfg.image_size, patch_size=mcfg.patch_size, projection_dim=mcfg.vision_hidden,
        ),
        text_config=LlamaConfig(
            hidden_size=mcfg.text_hidden, intermediate_size=mcfg.text_intermediate,
            num_hidden_layers=mcfg.text_layers, num_attention_heads=mcfg.text_heads,
            num_key_value_heads=mcfg.text_heads, vocab_size=len(tokenizer),
            max_position_embeddings=mcfg.max_positions, bos_token_id=ids["<s>"],
            eos_token_id=ids[END_OF_TURN], pad_token_id=ids["<pad>"], tie_word_embeddings=True,
        ),
        image_token_id=ids["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=True,
        pad_token_id=ids["<pad>"], eos_token_id=ids[END_OF_TURN], bos_token_id=ids["<s>"],
    )
    torch.manual_seed(mcfg.init_seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids[END_OF_TURN]
    model.generation_config.pad_token_id = ids["<pad>"]
    vision = pretrain_vision(model, processor, mcfg)
    text = pretrain_text(model, tokenizer, mcfg)
    reading = pretrain_reading(model, processor, mcfg)
    n_params = sum(p.numel() for p in model.parameters())
    save_model(model.eval(), processor, out, extra_files={"r3v_embedded.json": json.dumps(
        {"model": dataclasses.asdict(mcfg), "parameters": n_params, "vision_pretraining": vision,
         "text_pretraining": text, "reading_pretraining": reading}, indent=2)})
    log.info("built embedded VLM (%.2fM parameters) at %s", n_params / 1e6, out)
    return out


def cached_build(mcfg: EmbeddedModelConfig, cache_dir: str | Path) -> Path:
    """Where the build for this config lives in the model cache `cache_dir` (built or not)."""
    return Path(cache_dir).expanduser() / "embedded" / f"tiny-llava-{_key(mcfg)}"


def ensure_built(mcfg: EmbeddedModelConfig, cache_dir: str | Path) -> Path:
    """Path of the cached build for this config, building it first if absent."""
    out = cached_build(mcfg, cache_dir)
    if (out / "r3v_embedded.json").exists():
        return out
    build(mcfg, out)  # written to a temporary folder and renamed into place
    return out
