"""Prompt tuning and prefix tuning (issue 7): train / save / reload / evaluate on the tiny backbone, alignment of
hidden states with the input, prefix attention against a hand-written reference, composition errors, presets.
(Merge refusal and the promises every kind keeps: tests/test_kinds.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel, PeftModelForFeatureExtraction

from adapterx import store
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.methods import get_method, parse_spec
from adapterx.study.evaluate import evaluate_languages
from adapterx.tasks import get_task
from adapterx.training import strategies as transfer

ROOT = Path(__file__).resolve().parents[1]
SPECS = {
    "prompt": {"kind": "prompt", "num_virtual_tokens": 4},
    "prefix": {"kind": "prefix", "num_virtual_tokens": 4},
    "prefix-projection": {
        "kind": "prefix",
        "num_virtual_tokens": 4,
        "prefix_projection": True,
        "projection_hidden_size": 16,
    },
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run faster on one thread


@pytest.fixture(scope="module")
def tiny():
    return load_backbone("builtin:tiny-xlmr")


@pytest.fixture(scope="module")
def batch(tiny):
    """Padded, two languages, three NLI-style labels."""
    pairs = [
        ("the happy dog eats the apple", "the dog eats the apple"),
        ("der hund isst nicht den apfel heute", "der hund isst den apfel"),
        ("the cat sleeps", "the dog eats"),
        ("le chien mange la pomme", "le chien ne mange pas"),
    ]
    enc = tiny.tokenizer([p for p, _ in pairs], [h for _, h in pairs], padding=True, return_tensors="pt")
    return dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]), torch.tensor([0, 2, 1, 2])


def _model(tiny, spec: dict, name: str = "a", head: bool = True) -> AdaptedModel:
    torch.manual_seed(0)
    model = AdaptedModel(tiny.fresh_copy())
    store.add_adapter(model, name, parse_spec(spec))
    store.activate(model, [name], trainable=name)
    if head:
        model.add_head(name, HeadSpec("classification", 3))
    return model


def _eval_loss(model: AdaptedModel, inputs: dict, labels: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        return model(**inputs, labels=labels).loss.item()


def _train(model: AdaptedModel, inputs: dict, labels: torch.Tensor, steps: int = 30) -> tuple[float, float]:
    """A few AdamW steps on every tensor with requires_grad; the loss (without dropout) before and after. (30: the
    <s>-pooled head on the random tiny backbone starts near the loss of the label prior, so 15 steps of a noisy,
    dropout-on descent can end a hair above where they began.)"""
    before = _eval_loss(model, inputs, labels)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, _eval_loss(model, inputs, labels)


def _adapter_step_lowers_loss(model: AdaptedModel, inputs: dict, labels: torch.Tensor) -> tuple[float, float]:
    """One plain gradient step on the adapter's tensors alone (head fixed, no dropout): the loss before, after."""
    params = [p for n, p in model.named_parameters() if p.requires_grad and "prompt_encoder" in n]
    model.eval()
    loss = model(**inputs, labels=labels).loss
    grads = torch.autograd.grad(loss, params)
    assert all(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(g / sum(x.norm() ** 2 for x in grads).sqrt() * 1e-2)
    return loss.item(), _eval_loss(model, inputs, labels)


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_train_save_reload_evaluate(tiny, batch, tmp_path, variant):
    inputs, labels = batch
    model = _model(tiny, SPECS[variant])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("prompt_encoder.a." in n or n.startswith("heads.a.") for n in trainable), trainable
    adapter_params = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "prompt_encoder" in n)
    n, layers, hidden = 4, tiny.model.config.num_hidden_layers, tiny.hidden_size
    expected = {
        "prompt": n * hidden,
        "prefix": n * 2 * layers * hidden,
        "prefix-projection": n * hidden + (hidden * 16 + 16) + (16 * 2 * layers * hidden + 2 * layers * hidden),
    }
    assert adapter_params == expected[variant]

    torch.manual_seed(0)
    before, after = _train(model, inputs, labels)
    assert after < before, (before, after)
    before, after = _adapter_step_lowers_loss(model, inputs, labels)  # the gradient reaches the adapter itself
    assert after < before, (before, after)
    assert model.backbone.current_fingerprint() == tiny.fingerprint  # the base did not move

    directory = store.save_adapter(model, "a", tmp_path / "a", task="tiny-xnli", labels=["e", "n", "c"], head="a")
    assert {p.name for p in directory.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.safetensors",
        "adapterx.json",
    }
    with torch.inference_mode():
        expected_logits = model(**inputs).logits

    reloaded = AdaptedModel(tiny.fresh_copy())
    record = store.load_adapter(reloaded, directory)
    assert record.spec == parse_spec(SPECS[variant])
    store.activate(reloaded, ["a"])
    reloaded.eval()
    with torch.inference_mode():
        logits = reloaded(**inputs).logits
    if variant == "prefix-projection":  # the saved prefix is the projection's output, computed once at save time
        torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(logits, expected_logits)

    scores = evaluate_languages(
        reloaded,
        get_task("tiny-xnli"),
        tiny.tokenizer,
        split="validation",
        languages=["en", "de"],
        limit=16,
        progress=False,
    )
    assert set(scores) == {"en", "de"} and all(0.0 <= s["accuracy"] <= 100.0 for s in scores.values())  # percent


@pytest.mark.parametrize("variant", ["prompt", "prefix"])
def test_saved_adapter_loads_in_plain_peft(tiny, batch, tmp_path, variant):
    inputs, _ = batch
    model = _model(tiny, SPECS[variant], head=False)
    with torch.no_grad():
        model.encoder.prompt_encoder["a"].embedding.weight.normal_()
    model.eval()
    store.save_adapter(model, "a", tmp_path / "a")
    with torch.inference_mode():
        expected = model.encode(**inputs).last_hidden_state
        plain = PeftModel.from_pretrained(tiny.fresh_copy().model, str(tmp_path / "a")).eval()
        assert isinstance(plain, PeftModelForFeatureExtraction)  # task_type in adapter_config.json picks it
        hidden = plain(**inputs).last_hidden_state
    offset = 4 if variant == "prompt" else 0
    assert torch.equal(hidden[:, offset:], expected)


def test_prompt_hidden_states_are_aligned_with_the_input(tiny, batch):
    inputs, _ = batch
    model = _model(tiny, SPECS["prompt"], head=False)
    model.eval()
    with torch.inference_mode():
        raw = model.encoder(**inputs, output_hidden_states=True)
        out = model.encode(**inputs, output_hidden_states=True)
    length = inputs["input_ids"].shape[1]
    assert raw.last_hidden_state.shape[1] == length + 4  # peft puts the virtual tokens in front
    assert out.last_hidden_state.shape == (4, length, tiny.hidden_size)
    assert all(h.shape[1] == length for h in out.hidden_states)
    assert torch.equal(out.last_hidden_state, raw.last_hidden_state[:, 4:])
    # position 0 is <s>: its layer-0 hidden state is <s>'s embedding (not a virtual token's)
    assert torch.equal(out.hidden_states[0][:, 0], raw.hidden_states[0][:, 4])


def test_prompt_changes_the_output_and_base_model_is_not_shared(tiny, batch):
    inputs, _ = batch
    model = _model(tiny, SPECS["prompt"], head=False).eval()
    with torch.inference_mode():
        prompted = model.encode(**inputs).last_hidden_state
        base = tiny.model(**inputs).last_hidden_state
    assert prompted.shape == base.shape and not torch.allclose(prompted, base)


def test_prompt_text_init_uses_the_texts_token_embeddings(tiny):
    model = _model(
        tiny, {"kind": "prompt", "num_virtual_tokens": 5, "init": "text", "init_text": "the dog eats"}, head=False
    )
    ids = tiny.tokenizer("the dog eats", add_special_tokens=False)["input_ids"]
    ids = (ids * 5)[:5]
    table = model.encoder.prompt_encoder["a"].embedding.weight
    assert torch.equal(table, tiny.model.get_input_embeddings().weight[ids])


def _reference_prefix_encoder(xlmr, prefix: torch.Tensor, input_ids, attention_mask) -> torch.Tensor:
    """XLM-R by hand, each layer's keys/values preceded by the prefix's: the definition of prefix tuning."""
    n = prefix.shape[0]
    layers = xlmr.config.num_hidden_layers
    heads = xlmr.config.num_attention_heads
    d = xlmr.config.hidden_size // heads
    b, length = input_ids.shape
    # peft's layout: (n, layers * 2 * hidden) -> per layer (key, value), each (heads, n, d)
    kv = prefix.view(n, layers * 2, heads, d).permute(1, 2, 0, 3)
    h = xlmr.embeddings(input_ids=input_ids, past_key_values_length=n)
    mask = torch.cat([torch.ones(b, n), attention_mask.float()], dim=1)
    bias = (1.0 - mask)[:, None, None, :] * torch.finfo(h.dtype).min

    def split(x):
        return x.view(b, length, heads, d).transpose(1, 2)

    for i, layer in enumerate(xlmr.encoder.layer):
        att = layer.attention
        q = split(att.self.query(h))
        k = torch.cat([kv[2 * i].expand(b, -1, -1, -1), split(att.self.key(h))], dim=2)
        v = torch.cat([kv[2 * i + 1].expand(b, -1, -1, -1), split(att.self.value(h))], dim=2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(b, length, -1)
        h = att.output.LayerNorm(att.output.dense(ctx) + h)
        h = layer.output.LayerNorm(layer.output.dense(layer.intermediate(h)) + h)
    return h


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_prefix_attention_matches_reference(tiny, batch, attention):
    inputs, _ = batch
    backbone = tiny.fresh_copy()
    backbone.model.set_attn_implementation(attention)
    model = AdaptedModel(backbone)
    store.add_adapter(model, "a", parse_spec(SPECS["prefix"]))
    store.activate(model, ["a"])
    with torch.no_grad():
        model.encoder.prompt_encoder["a"].embedding.weight.normal_()
    model.eval()
    with torch.inference_mode():
        hidden = model.encode(**inputs).last_hidden_state
        reference = _reference_prefix_encoder(
            backbone.model,
            model.encoder.prompt_encoder["a"].embedding.weight,
            inputs["input_ids"],
            inputs["attention_mask"],
        )
        # a padded row gives the same hidden states as the row alone, unpadded
        real = int(inputs["attention_mask"][2].sum())
        alone = model.encode(inputs["input_ids"][2:3, :real], inputs["attention_mask"][2:3, :real]).last_hidden_state
    assert hidden.shape == inputs["input_ids"].shape + (tiny.hidden_size,)
    keep = inputs["attention_mask"].bool()
    torch.testing.assert_close(hidden[keep], reference[keep], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hidden[2, :real], alone[0], rtol=1e-4, atol=1e-5)


def test_composition_errors_say_why(tiny, tmp_path):
    assert not get_method("prompt").stackable and not get_method("prefix").stackable and get_method("lora").stackable
    model = _model(tiny, SPECS["prefix"], name="prefix_a", head=False)
    with pytest.raises(CompositionError, match="only one type"):
        store.add_adapter(model, "lb", parse_spec({"kind": "lora", "r": 2}))
    with pytest.raises(CompositionError, match="only one type"):
        store.add_adapter(model, "prompt_b", parse_spec(SPECS["prompt"]))
    store.add_adapter(model, "prefix_b", parse_spec(SPECS["prefix"]))  # same type: may be attached ...
    with pytest.raises(CompositionError, match="one prompt-learning adapter at a time"):
        store.activate(model, ["prefix_a", "prefix_b"], trainable="prefix_b")  # ... but not active with another
    store.activate(model, ["prefix_b"])

    lora = _model(tiny, {"kind": "lora", "r": 2}, name="la", head=False)
    with pytest.raises(CompositionError, match="only one type"):
        store.add_adapter(lora, "prefix_b", parse_spec(SPECS["prefix"]))

    # transfer strategies: a prefix intermediate under a LoRA target is refused; 'continue' from a prefix works
    saved = store.save_adapter(_model(tiny, SPECS["prefix"], head=False), "a", tmp_path / "intermediate")
    with pytest.raises(CompositionError, match="only one type"):
        transfer.prepare("stack", tiny.fresh_copy(), parse_spec({"kind": "lora", "r": 2}), saved)
    with pytest.raises(CompositionError, match="one prompt-learning adapter at a time"):
        transfer.prepare("stack", tiny.fresh_copy(), parse_spec(SPECS["prefix"]), saved)
    prepared = transfer.prepare("continue", tiny.fresh_copy(), parse_spec(SPECS["prefix"]), saved)
    reference = AdaptedModel(tiny.fresh_copy())
    store.load_adapter(reference, saved, name="source")
    method = get_method("prefix")
    assert torch.equal(
        method.adapter_state(prepared.model, transfer.TARGET)["prompt_encoder.embedding.weight"],
        method.adapter_state(reference, "source")["prompt_encoder.embedding.weight"],
    )
    assert prepared.model.encoder.prompt_encoder[transfer.TARGET].embedding.weight.requires_grad

    # a saved projected prefix holds the projection's output only: 'continue' with a projection says so
    projected = parse_spec(SPECS["prefix-projection"])
    saved = store.save_adapter(_model(tiny, SPECS["prefix-projection"], head=False), "a", tmp_path / "projected")
    with pytest.raises(CompositionError, match="prefix_projection: false"):
        transfer.prepare("continue", tiny.fresh_copy(), projected, saved)


def test_specs_validate_by_field():
    assert parse_spec({"kind": "prefix", "num_virtual_tokens": 32}).num_virtual_tokens == 32
    with pytest.raises(AdapterxError, match="num_virtual_tokens"):
        parse_spec({"kind": "prefix", "num_virtual_tokens": 0})
    with pytest.raises(AdapterxError, match="init_text"):
        parse_spec({"kind": "prompt", "init": "text"})
    with pytest.raises(AdapterxError, match="unknown field"):
        parse_spec({"kind": "prompt", "prefix_projection": True})


def test_too_many_virtual_tokens_fail_early(tiny):
    with pytest.raises(AdapterxError, match="leaves no positions"):
        _model(tiny, {"kind": "prefix", "num_virtual_tokens": 128}, head=False)


@pytest.mark.parametrize("preset,length", [("prefix-xnli", 32), ("prefix-pawsx", 16), ("prefix-udpos", 16)])
def test_presets_carry_the_papers_prefix_lengths(preset, length):
    data = yaml.safe_load((ROOT / "recipes" / "presets" / f"{preset}.yaml").read_text())
    spec = parse_spec(data["adapter"])
    assert spec.kind == "prefix" and spec.num_virtual_tokens == length


def test_the_ia3_preset_is_the_papers_and_the_kinds_default():
    data = yaml.safe_load((ROOT / "recipes" / "presets" / "ia3-xnli.yaml").read_text())
    spec = parse_spec(data["adapter"])
    assert spec == parse_spec({"kind": "ia3"}) and "attention.output.dense" in spec.exclude_modules
    assert data["train"] == {"learning_rate": 3.0e-3}


def test_quickstart_switches_to_prompt_tuning_with_one_field(tmp_path):
    from adapterx.study.recipe import load_recipe

    data = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    data["adapter"] = {"kind": "prompt"}
    path = tmp_path / "quickstart-prompt.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_recipe(path).adapter_spec.kind == "prompt"


@pytest.mark.parametrize("variant", ["prompt", "prefix-projection"])
def test_train_adapter_checkpoints_and_resumes_exactly(tiny, tmp_path, variant):
    """adapterx.training.loop over these kinds: checkpoints hold the raw prompt-encoder tensors (a prefix projection's
    MLP included), so a resumed run ends where an uninterrupted one does."""
    import shutil

    from adapterx.tasks.data import load_split
    from adapterx.tasks.processing import processor_for
    from adapterx.training.loop import TrainConfig, train_adapter, trainable_state

    task = get_task("tiny-nli")
    processor = processor_for(task)
    data = processor.encode(task, load_split(task, "train", limit=32), tiny.tokenizer)
    collate = processor.collator(tiny.tokenizer)
    config = TrainConfig(max_steps=6, batch_size=8, learning_rate=1e-2, checkpoint_every=3, eval_every=100)

    def run(directory, resume=False):
        model = _model(tiny, SPECS[variant])
        result = train_adapter(model, "a", "a", data, collate, config, directory, resume=resume, progress=False)
        return model, result

    full, _ = run(tmp_path / "full")
    assert full.backbone.current_fingerprint() == tiny.fingerprint
    run(tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-6", ignore_errors=True)
    resumed, result = run(tmp_path / "cut", resume=True)
    assert result.resumed_from == 3 and result.steps == 6
    expected = trainable_state(full, "a", "a")
    got = trainable_state(resumed, "a", "a")
    assert any("prompt_encoder" in k for k in got) and set(got) == set(expected)
    for key, value in got.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)
