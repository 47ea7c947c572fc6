"""(IA)³ and DoRA beyond the kind matrix (tests/test_kinds.py): the modules (IA)³ scales, stacks whose merged and
fused forms compute what peft computes unmerged, what each cannot do (share a model with LoRA; DoRA: mixed
batches, weighted merges), and the plain folding math against hand-written formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterx import store
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.heads import HeadSpec
from adapterx.core.lowrank import LoraFactors, merged_weight
from adapterx.core.model import AdaptedModel
from adapterx.core.scaling import FeatureScaling
from adapterx.deploy.fastlora import FusedLoraLinear
from adapterx.deploy.fastscaling import ScaledLinear
from adapterx.deploy.forms import fused_form, merged_form
from adapterx.methods import get_method, parse_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturbed(model: AdaptedModel, name: str, seed: int) -> None:
    method = model.adapters[name].method
    gen = torch.Generator().manual_seed(seed)
    state = method.adapter_state(model, name)
    method.load_adapter_state(model, name, {k: t + torch.randn(t.shape, generator=gen) * 0.1 for k, t in state.items()})


def _stack(backbone, spec: dict, n: int = 2) -> AdaptedModel:
    model = AdaptedModel(backbone.fresh_copy())
    names = [f"s{i}" for i in range(n)]
    for i, name in enumerate(names):
        store.add_adapter(model, name, parse_spec(spec))
        _perturbed(model, name, seed=i)
    store.activate(model, names)
    model.add_head("h", HeadSpec("classification", 3))  # the plain forms copy the active head
    return model.eval()


def test_ia3_scales_keys_values_and_the_feed_forward_input_only(pristine_backbone):
    model = AdaptedModel(pristine_backbone.fresh_copy())
    store.add_adapter(model, "a", parse_spec({"kind": "ia3"}))
    changes = get_method("ia3").weight_changes(model, "a")
    sides = {name.split(".", 3)[-1]: change.on for name, change in changes.items()}
    assert sides == {"attention.self.key": "output", "attention.self.value": "output", "output.dense": "input"}
    layers = pristine_backbone.model.config.num_hidden_layers
    assert len(changes) == 3 * layers  # not the attention's own output.dense
    assert all(torch.equal(c.vector, torch.ones_like(c.vector)) for c in changes.values())  # starts as identity


@pytest.mark.parametrize(
    "spec", [{"kind": "ia3"}, {"kind": "lora", "r": 2, "use_dora": True}, {"kind": "lora", "r": 2}], ids=str
)
def test_a_stack_merged_and_fused_computes_what_peft_computes(pristine_backbone, probe, spec):
    model = _stack(pristine_backbone, spec, n=2)
    ids, mask = probe["input_ids"], probe["attention_mask"]
    with torch.inference_mode():
        expected = model.encode(ids, mask).last_hidden_state
        base = AdaptedModel(pristine_backbone.fresh_copy()).encode(ids, mask).last_hidden_state
        assert not torch.allclose(expected, base, atol=1e-3)
        for form in (merged_form(model), fused_form(model)):
            torch.testing.assert_close(form.encode(ids, mask).last_hidden_state, expected, atol=2e-5, rtol=1e-4)


def test_folding_math_matches_the_papers_formulas():
    gen = torch.Generator().manual_seed(0)
    w, b, x = torch.randn(5, 4, generator=gen), torch.randn(5, generator=gen), torch.randn(3, 4, generator=gen)
    base = nn.Linear(4, 5)
    with torch.no_grad():
        base.weight.copy_(w)
        base.bias.copy_(b)
    # DoRA (Liu et al. 2024): W' = m * (W + sBA) / ||W + sBA|| per output row, bias unchanged; a second adapter
    # applies to the result (peft's order at inference)
    f1 = LoraFactors(torch.randn(2, 4, generator=gen), torch.randn(5, 2, generator=gen), 0.5, torch.rand(5) + 0.5)
    f2 = LoraFactors(torch.randn(1, 4, generator=gen), torch.randn(5, 1, generator=gen), 2.0)
    v1 = w + 0.5 * f1.B @ f1.A
    first = f1.magnitude[:, None] * v1 / v1.norm(dim=1, keepdim=True)
    torch.testing.assert_close(merged_weight(w, [f1, f2]), first + 2.0 * f2.B @ f2.A)
    with torch.no_grad():
        torch.testing.assert_close(FusedLoraLinear(base, [f1, f2])(x), x @ (first + 2.0 * f2.B @ f2.A).T + b)
    # (IA)³: l_out * (W (l_in * x) + b), a stack's vectors multiplied
    l_in, l_out, l_out2 = torch.rand(4) + 0.5, torch.rand(5) + 0.5, torch.rand(5) + 0.5
    scalings = [FeatureScaling(l_in, "input"), FeatureScaling(l_out, "output"), FeatureScaling(l_out2, "output")]
    with torch.no_grad():
        torch.testing.assert_close(ScaledLinear(base, scalings)(x), l_out * l_out2 * ((x * l_in) @ w.T + b))
    with pytest.raises(CompositionError, match="does not fit"):
        ScaledLinear(base, [FeatureScaling(torch.ones(5), "input")])


def test_what_ia3_and_dora_cannot_do_is_said(pristine_backbone):
    ia3, lora = get_method("ia3"), get_method("lora")
    assert "one type per model" in lora.shares_model_with(ia3) and not lora.shares_model_with(lora)
    assert "one adapter library" in lora.shares_model_with(get_method("bottleneck"))
    model = AdaptedModel(pristine_backbone.fresh_copy())
    store.add_adapter(model, "l", parse_spec({"kind": "lora", "r": 2}))
    with pytest.raises(CompositionError, match="only one type"):
        store.add_adapter(model, "i", parse_spec({"kind": "ia3"}))
    assert not ia3.mixes_per_row and lora.mixes_per_row
    spec, why = ia3.capacity_scaled(parse_spec({"kind": "ia3"}), 2)
    assert spec is None and "one vector per adapted layer" in why
    dora = {"p": {"kind": "lora", "r": 2, "use_dora": True}, "q": {"kind": "lora", "r": 2}}
    assert "DoRA" in lora.composition_problem("mixed", dora, {})
    assert "DoRA" in lora.composition_problem("weighted", dora, {"method": "linear", "weights": [0.5, 0.5]})
    assert not lora.composition_problem("stack", dora, {})
    with pytest.raises(AdapterxError, match="feedforward_modules: 'query' not among target_modules"):
        parse_spec({"kind": "ia3", "feedforward_modules": ["query"]})
    with pytest.raises(AdapterxError, match=r"adapter 'x'.exclude_modules: 'nope' matches no linear module"):
        store.add_adapter(
            AdaptedModel(pristine_backbone.fresh_copy()), "x", parse_spec({"kind": "ia3", "exclude_modules": ["nope"]})
        )
