"""SQ-LLaVA's prototype extractor: soft EM clustering, zero-gated residual, saved and loaded with
the checkpoint, trained beside LoRA in the adapter."""

import torch

from r3v import prompts, prototype
from r3v.config import EmbeddedBenchConfig
from r3v.embedded.bench.suite import generate
from r3v.models import add_lora, load_model, load_processor, save_model
from r3v.prototype import PrototypeExtractor
from r3v.trainer.data import Example, collate, encode


def test_extractor_starts_as_identity_and_learns_through_its_gate():
    torch.manual_seed(0)
    ext = PrototypeExtractor(dim=16, clusters=5, em_steps=2)
    x = torch.randn(3, 10, 16)
    assert torch.equal(ext(x), x)  # gate 0: the projector sees what it saw before
    p, keys = ext.cluster(x)
    assert p.shape == (3, 5, 16) and keys.shape == (3, 10, 16)
    ext(x).pow(2).sum().backward()
    assert ext.gate.grad.abs().sum() > 0  # the gate can open
    with torch.no_grad():
        ext.gate.fill_(0.5)
    ext.zero_grad()
    ext(x).pow(2).sum().backward()
    for name in ("prototypes", "q.weight", "k.weight", "v.weight", "norm_tokens.weight"):
        assert dict(ext.named_parameters())[name].grad.abs().sum() > 0, name
    # each token's soft assignment is a distribution over the K prototypes
    xn = ext.norm_tokens(x)
    a = (ext.q(ext.norm_prototypes(ext.prototypes.expand(3, -1, -1))) @ ext.k(xn).transpose(1, 2)).softmax(1)
    assert torch.allclose(a.sum(1), torch.ones(3, 10))


def _batch(processor):
    qs = generate("seed", 3, EmbeddedBenchConfig())
    b = collate([encode(processor, Example("sft", q["image"]["bytes"], tuple(prompts.cot(q["question"])),
                                           q["rationale"]), 512) for q in qs], processor.tokenizer.pad_token_id)
    return {k: v for k, v in b.items() if k not in ("labels", "kinds")}


def _one_step(peft_model, batch):
    """One SGD step on every trainable parameter; the logits after it."""
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model(**batch).logits.float().pow(2).mean().backward()
    opt.step()
    peft_model.eval()
    with torch.no_grad():
        return peft_model(**batch).logits


def test_checkpoint_and_adapter_carry_the_extractor(small_model, tmp_path):
    processor = load_processor(small_model)
    batch = _batch(processor)
    model = load_model(small_model)
    with torch.no_grad():
        base = model(**batch).logits
    ext = prototype.install(model, clusters=prototype.clusters_for(model, 256, 0.25), em_steps=2)
    assert ext.clusters == 16  # a quarter of the 64 image tokens
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, base)  # gate 0
        ext.gate.normal_()
        opened = model(**batch).logits
    assert not torch.allclose(opened, base, atol=1e-4)  # the hook is in the image path

    save_model(model, processor, tmp_path / "m0")
    assert (tmp_path / "m0" / prototype.WEIGHTS_FILE).exists()
    reloaded = load_model(tmp_path / "m0")
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, opened, atol=1e-5)

    # a LoRA iteration trains the extractor fully (modules_to_save) and saves it in the adapter
    peft_model = add_lora(reloaded.train(), r=4, alpha=8, dropout=0.0, modules_to_save=[prototype.NAME])
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any(prototype.NAME in n and "lora_" not in n for n in trainable)
    trained = _one_step(peft_model, batch)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = load_model(tmp_path / "m0", adapter=tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, trained, atol=1e-4)
    assert not torch.allclose(getattr(merged, prototype.NAME).gate, ext.gate)  # the trained copy


def test_an_extractor_added_at_training_travels_in_the_adapter(small_model, tmp_path):
    """A base model without an extractor (an adopted M_0): the iteration installs a gate-0 one,
    trains it in the adapter, and loading the adapter onto the plain base restores it."""
    processor = load_processor(small_model)
    batch = _batch(processor)
    model = load_model(small_model)
    prototype.ensure(model, clusters=8, em_steps=2)
    peft_model = add_lora(model.train(), r=4, alpha=8, dropout=0.0, modules_to_save=[prototype.NAME])
    trained = _one_step(peft_model, batch)
    peft_model.save_pretrained(tmp_path / "adapter")
    prototype.write_config(peft_model.base_model.model, tmp_path / "adapter")
    merged = load_model(small_model, adapter=tmp_path / "adapter")
    assert getattr(merged, prototype.NAME).clusters == 8
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, trained, atol=1e-4)


def test_the_extractor_trains_at_its_own_lr(small_model):
    """`model.prototype.lr`: the trainer gives the extractor's parameters their own learning rate
    (here 0: the extractor stays put while LoRA moves; then a large one: its gate opens)."""
    from r3v.config import PrototypeConfig
    from r3v.trainer.loop import LoopSpec, train

    processor = load_processor(small_model)
    qs = generate("seed", 4, EmbeddedBenchConfig())
    data = [encode(processor, Example("sft", q["image"]["bytes"], tuple(prompts.cot(q["question"])), q["rationale"]),
                   512) for q in qs]
    pc = PrototypeConfig(enabled=True, lr=0.05)
    assert prototype.lr_by_name(pc) == ((prototype.NAME, 0.05),)
    assert prototype.lr_by_name(PrototypeConfig(enabled=True)) == ()  # 0: the stage's lr
    for lr, moves in ((1e-12, False), (0.05, True)):
        model = load_model(small_model)
        prototype.ensure(model, clusters=8, em_steps=2)
        peft_model = add_lora(model.train(), r=4, alpha=8, dropout=0.0, modules_to_save=[prototype.NAME])
        ext = getattr(peft_model.base_model.model, prototype.NAME).modules_to_save["default"]
        lora = next(p for n, p in peft_model.named_parameters() if "lora_B" in n)
        spec = LoopSpec(lr=1e-3, batch_size=2, max_steps=3, lr_by_name=prototype.lr_by_name(PrototypeConfig(enabled=True, lr=lr)))
        logs = train(peft_model, data, spec, {"sft": 1.0}, processor.tokenizer.pad_token_id, progress=False)
        assert logs[0]["lr"] <= 1e-3  # the logged lr is the base group's (scheduled)
        assert lora.abs().sum() > 0  # LoRA trained at 1e-3 either way
        assert (ext.gate.abs().max() > 0.05) == moves, (lr, ext.gate.abs().max())
