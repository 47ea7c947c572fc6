"""The promises every adapter kind keeps, one parametrised matrix over the kinds and both encoder architectures
(XLM-R, BERT): train / save / reload gives
identical outputs, merge works or is refused with the kind's reason, composition follows the kind's rules (a
stack builds or is clearly refused), and the bench form that stands for the kind's deployment builds.

Kind-specific behaviour (prefix attention against a reference, fusion, weighted merges against hand-built math)
stays in the kind's own test module; what every kind must do is here."""

from __future__ import annotations

import pytest
import torch

from adapterx import store
from adapterx.bench.forms import Batch, FormContext, build_form
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import CompositionError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.compose import Mixed, Stack, Sum, Weighted, compose, read_parts, validate
from adapterx.deploy.forms import fused_form, merged_form
from adapterx.deploy.merge import TOLERANCE, merge_adapters
from adapterx.methods import get_method, kinds, parse_spec


def _variant(kind: str, options: dict) -> str:
    return kind + "".join(f"-{k}={v}" for k, v in options.items() if k not in ("r", "reduction_factor"))


# every registered kind's example specs (`Method.examples`: a small spec per variant, e.g. LoRA and DoRA): a kind
# added to the registry joins the matrix without a change here
SPECS = {_variant(k, ex): {"kind": k, **ex} for k in kinds() for ex in get_method(k).examples}
LABELS = ["e", "n", "c"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run faster on one thread


def _train(backbone, spec: dict, seed: int) -> AdaptedModel:
    """An adapter of `spec` with a head, trained a few AdamW steps on a fixed batch (the base stays frozen)."""
    torch.manual_seed(seed)
    model = AdaptedModel(backbone)
    store.add_adapter(model, "a", parse_spec(spec))
    store.activate(model, ["a"], trainable="a")
    model.add_head("a", HeadSpec("classification", len(LABELS)))
    tok = backbone.tokenizer
    enc = tok(
        ["the happy dog eats the apple", "der hund isst nicht den apfel", "le chat dort", "the cat"],
        padding=True,
        return_tensors="pt",
    )
    labels = torch.tensor([0, 2, 1, 0])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(enc["input_ids"], enc["attention_mask"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module", params=["builtin:tiny-xlmr", "builtin:tiny-bert"])
def tiny(request):
    """Both architectures: XLM-R, and BERT (the architecture of builtin:multilingual-e5-small, whose own matrix is
    in test_e5small_tasks.py, slow); they share the tiny tokenizer, so `probe` fits both."""
    return load_backbone(request.param)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """{variant: (trained model, its saved directory, a second saved adapter of the same spec)}, built on first use."""
    cache: dict = {}

    def get(variant: str):
        if variant not in cache:
            root = tmp_path_factory.mktemp(variant)
            model = _train(tiny.fresh_copy(), SPECS[variant], seed=0)
            first = store.save_adapter(model, "a", root / "first", task="tiny-xnli", labels=LABELS, head="a")
            other = _train(tiny.fresh_copy(), SPECS[variant], seed=1)
            second = store.save_adapter(other, "a", root / "second", task="tiny-xnli", labels=LABELS, head="a")
            cache[variant] = (model, first, second)
        return cache[variant]

    return get


def test_the_matrix_covers_every_kind():
    assert {s["kind"] for s in SPECS.values()} == set(kinds()) >= {"lora", "ia3", "bottleneck", "prompt", "prefix"}
    assert {"lora-use_dora=True", "bottleneck-architecture=houlsby"} <= set(SPECS)
    for spec in SPECS.values():
        parse_spec(spec)


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_train_save_reload_gives_identical_outputs(tiny, probe, trained, variant):
    model, directory, _ = trained(variant)
    method = get_method(SPECS[variant]["kind"])
    assert model.backbone.current_fingerprint() == tiny.fingerprint  # only the adapter and head trained
    assert {p.name for p in directory.iterdir()} >= {"adapterx.json", "head.safetensors", method.weights_file}
    assert not list(directory.glob("*.bin")) and not list(directory.glob("*.pt"))
    with torch.inference_mode():
        expected = model(**probe).logits
    reloaded = AdaptedModel(tiny.fresh_copy())
    record = store.load_adapter(reloaded, directory)
    assert record.spec == parse_spec(SPECS[variant])
    store.activate(reloaded, ["a"])
    with torch.inference_mode():
        assert torch.equal(reloaded.eval()(**probe).logits, expected)
        assert not torch.allclose(
            AdaptedModel(tiny.fresh_copy()).encode(probe["input_ids"], probe["attention_mask"]).last_hidden_state,
            reloaded.encode(probe["input_ids"], probe["attention_mask"]).last_hidden_state,
            atol=1e-4,
        )  # the adapter is in use
    metadata = store.read_metadata(directory)
    assert metadata["base_model"]["fingerprint"] == tiny.fingerprint and metadata["labels"] == LABELS
    assert {"torch", "peft", "adapters", "transformers"} <= set(metadata["library_versions"])


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_merge_works_or_is_refused_with_the_kinds_reason(tiny, probe, trained, tmp_path, variant):
    model, directory, _ = trained(variant)
    method = get_method(SPECS[variant]["kind"])
    merged, fused = merged_form(model), fused_form(model)
    assert (merged is not None) == method.mergeable
    # a fused (library-free) form exists exactly where the kind names a bench form for it: mergeable kinds, bottleneck
    has_fused = method.bench_form(parse_spec(SPECS[variant]), "none", "fused") is not None
    assert (fused is not None) == has_fused and (has_fused or not method.mergeable)
    with torch.inference_mode():  # and they compute what the adapters compute
        expected = model(**probe).logits
        for form in (f for f in (merged, fused) if f is not None):
            torch.testing.assert_close(form(**probe).logits, expected, atol=1e-4, rtol=1e-4)
    if method.mergeable:
        report = merge_adapters(tiny.fresh_copy(), {"a": directory}, tmp_path / "merged")
        assert report.max_abs_diff <= TOLERANCE and report.merged == ["a"]
        return
    assert method.not_mergeable_reason, f"{method.kind} must say why it cannot be merged"
    with pytest.raises(CompositionError) as info:
        merge_adapters(tiny.fresh_copy(), {"a": directory}, tmp_path / "merged")
    message = str(info.value)
    assert method.not_mergeable_reason in message and "'a'" in message and "kind=lora" in message
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_composition_follows_the_kinds_rules(tiny, probe, trained, variant):
    model, first, second = trained(variant)
    method = get_method(SPECS[variant]["kind"])
    alone = compose(tiny.fresh_copy(), {"t": first}, "stack")  # one adapter: every kind
    with torch.inference_mode():
        torch.testing.assert_close(alone(probe["input_ids"], probe["attention_mask"]), model(**probe).logits)
    parts = read_parts({"p": first, "q": second})
    blocks = {
        "stack": Stack("p", "q"),
        "sum": Sum("p", "q"),
        "mixed": Mixed("p", "q"),
        "weighted": Weighted("p", "q", weights=[0.5, 0.5]),
    }
    specs = {n: p.metadata["spec"] for n, p in parts.items()}
    for name, block in blocks.items():
        problem = method.composition_problem(name, specs, block.options())
        allowed = not problem and (method.stackable or name in ("mixed", "weighted"))
        if allowed:
            validate(block, parts)
        else:
            with pytest.raises(CompositionError, match=method.kind):
                validate(block, parts)
    if method.stackable:
        stacked = compose(tiny.fresh_copy(), {"p": first, "q": second}, "stack")
        assert stacked.active == ["p", "q"] and stacked.model.active_adapters == ["p", "q"]
    else:
        with pytest.raises(CompositionError, match="run alone"):
            compose(tiny.fresh_copy(), {"p": first, "q": second}, "stack")


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_the_bench_form_of_each_deployment_builds(tiny, variant):
    spec = parse_spec(SPECS[variant])
    method = get_method(spec.kind)
    base = load_backbone(tiny.name, fingerprint=False).model
    ctx = FormContext(base=base, **method.bench_options(spec))
    batch = Batch(torch.randint(5, 100, (2, 12)), torch.ones(2, 12, dtype=torch.long))
    names = {method.bench_form(spec, strategy, "unmerged") for strategy in ("none", "stack", "continue")}
    if method.mergeable:
        names |= {method.bench_form(spec, "none", form) for form in ("merged", "fused")}
    names |= {n for s in ("none", "stack") if (n := method.bench_form(spec, s, "fused"))}
    assert None not in names and method.bench_form(spec, "fuse", "unmerged") is None
    with torch.inference_mode():
        expected = build_form("base", ctx)(batch)
        for name in sorted(names):
            out = build_form(name, ctx)(batch)
            assert out.shape == expected.shape, name  # aligned with the input, as every form
            assert not torch.allclose(out, expected), f"{name} left the output unchanged"
    assert all(not p.requires_grad for p in base.parameters())
