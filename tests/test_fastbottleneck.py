"""adapterx.deploy.fastbottleneck computes what the adapters library computes for trained bottleneck adapters (Pfeiffer
and Houlsby, one adapter and stacks, and the config flags that move residuals and layer norms), with no library
module left in the model."""

import adapters
import pytest
import torch
from adapters import BnConfig
from adapters.composition import Stack

from adapterx import store
from adapterx.bench.forms import Batch, FormContext, build_form
from adapterx.core.backbone import load_backbone
from adapterx.core.bottleneck import BottleneckWeights
from adapterx.core.errors import CompositionError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.fastbottleneck import apply_fast_bottleneck
from adapterx.deploy.forms import fused_form, merged_form
from adapterx.methods import get_method, parse_spec
from adapterx.methods.bottleneck import bottleneck_weights

ATOL = 1e-5


def _library_free(module: torch.nn.Module) -> bool:
    return not any(type(m).__module__.split(".")[0] in ("adapters", "peft") for m in module.modules())


def trained_stack(backbone, probe, arch: str, depth: int, steps: int = 3) -> AdaptedModel:
    """`depth` adapters of `arch`, each trained a few AdamW steps in turn (the others active beneath it)."""
    torch.manual_seed(0)
    model = AdaptedModel(backbone)
    names = [f"a{i}" for i in range(depth)]
    for n in names:
        store.add_adapter(model, n, parse_spec({"kind": "bottleneck", "architecture": arch, "reduction_factor": 4}))
    model.add_head("cls", HeadSpec("classification", 3))
    labels = torch.tensor([0, 2])
    for n in names:
        store.activate(model, names, trainable=n)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-2)
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            model(**probe, labels=labels).loss.backward()
            optimizer.step()
    store.activate(model, names)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_bert():
    return load_backbone("builtin:tiny-bert")


@pytest.mark.parametrize(
    "encoder,arch,depth",
    [
        ("xlmr", "pfeiffer", 1),
        ("xlmr", "pfeiffer", 2),
        ("xlmr", "houlsby", 1),
        ("xlmr", "houlsby", 2),
        ("bert", "pfeiffer", 2),
        ("bert", "houlsby", 2),
    ],
)
def test_fast_form_equals_the_library(pristine_backbone, tiny_bert, probe, encoder, arch, depth):
    pristine = pristine_backbone if encoder == "xlmr" else tiny_bert
    model = trained_stack(pristine.fresh_copy(), probe, arch, depth)
    up = dict(model.encoder.named_parameters())["encoder.layer.0.output.adapters.a0.adapter_up.weight"]
    assert up.abs().max() > 0.05  # trained: AdamW moved the up projection well away from its N(0, 0.02) start
    fast = fused_form(model)
    assert fast is not None and merged_form(model) is None
    assert _library_free(fast.encoder)
    wrapped = [n for n, m in fast.encoder.named_modules() if type(m).__name__ == "FastBottleneckOutput"]
    layers = len(model.encoder.encoder.layer)
    assert len(wrapped) == layers * (2 if arch == "houlsby" else 1)
    bare = AdaptedModel(pristine.fresh_copy())
    bare.heads["cls"] = model.head
    bare.set_head("cls")
    with torch.inference_mode():
        want = model(**probe).logits
        assert not torch.allclose(bare.eval()(**probe).logits, want, atol=1e-3)  # the adapters matter
        torch.testing.assert_close(fast(**probe).logits, want, atol=ATOL, rtol=1e-4)
        torch.testing.assert_close(
            fast.encode(probe["input_ids"], probe["attention_mask"]).last_hidden_state,
            model.encode(probe["input_ids"], probe["attention_mask"]).last_hidden_state,
            atol=ATOL,
            rtol=1e-4,
        )


def test_every_config_flag_follows_the_library(pristine_backbone, probe, perturb):
    """Adapter layer norms before/after, residual after the add ('post_add'), learned per-channel scaling,
    adapter residual before its LN, gelu, a layer left out, and a stack of two different configs."""
    model = pristine_backbone.fresh_copy().model
    adapters.init(model)
    model.add_adapter(
        "x",
        config=BnConfig(
            mh_adapter=True,
            output_adapter=True,
            reduction_factor=4,
            non_linearity="gelu",
            ln_before=True,
            ln_after=True,
            original_ln_before=True,
            residual_before_ln="post_add",
            adapter_residual_before_ln=True,
            scaling="channel",
            leave_out=[0],
        ),
    )
    model.add_adapter(
        "y",
        config=BnConfig(
            mh_adapter=False,
            output_adapter=True,
            reduction_factor=8,
            non_linearity="leakyrelu",
            residual_before_ln=False,
            original_ln_before=True,
            original_ln_after=False,
            scaling=0.5,
        ),
    )
    model.train_adapter(Stack("x", "y"))
    perturb(model, scale=0.2, seed=3)
    model.eval()
    weights = bottleneck_weights(model, ["x", "y"])
    assert "encoder.layer.0.attention.output" not in weights and [
        w.name for w in weights["encoder.layer.0.output"]
    ] == ["y"]
    assert [w.name for w in weights["encoder.layer.1.output"]] == ["x", "y"]
    fast = apply_fast_bottleneck(pristine_backbone.fresh_copy().model, weights).eval()
    assert _library_free(fast)
    with torch.inference_mode():
        want = model(**probe).last_hidden_state
        torch.testing.assert_close(fast(**probe).last_hidden_state, want, atol=ATOL, rtol=1e-4)


def test_only_a_plain_stack_has_a_fast_form(backbone, probe):
    model = AdaptedModel(backbone)
    for n in ("p", "q"):
        store.add_adapter(model, n, parse_spec({"kind": "bottleneck", "reduction_factor": 4}))
    model.add_head("cls", HeadSpec("classification", 2))
    method = get_method("bottleneck")
    store.activate_setup(model, ("weighted", ["p", "q"], {"weights": [0.5, 0.5], "method": "weighted"}))
    assert model.active_adapters == ["p", "q"] and fused_form(model) is None
    with pytest.raises(CompositionError, match="not active as a plain stack"):
        method.bottleneck_weights(model, ["p", "q"])
    store.activate(model, ["p", "q"])
    assert fused_form(model) is not None


def test_unsupported_adapters_and_bad_weights_are_clear_errors(pristine_backbone):
    model = pristine_backbone.fresh_copy().model
    adapters.init(model)
    model.add_adapter(
        "g",
        config=BnConfig(
            mh_adapter=False, output_adapter=True, reduction_factor=4, non_linearity="relu", use_gating=True
        ),
    )
    with pytest.raises(CompositionError, match="'g'.*gating"):
        bottleneck_weights(model, ["g"])
    with pytest.raises(CompositionError, match="no bottleneck adapter named \\['nope'\\]"):
        bottleneck_weights(model, ["nope"])
    w = torch.zeros(4, 64)
    with pytest.raises(CompositionError, match="projections must be down"):
        BottleneckWeights("bad", w, torch.zeros(4), w, torch.zeros(64), "relu")
    good = BottleneckWeights("ok", w, torch.zeros(4), w.t(), torch.zeros(64), "relu")
    with pytest.raises(CompositionError, match="no module 'encoder.layer.9.output'"):
        apply_fast_bottleneck(pristine_backbone.fresh_copy().model, {"encoder.layer.9.output": [good]})
    with pytest.raises(CompositionError, match="unknown bottleneck non-linearity"):
        apply_fast_bottleneck(
            pristine_backbone.fresh_copy().model,
            {
                "encoder.layer.0.output": [
                    BottleneckWeights("ok", w, torch.zeros(4), w.t(), torch.zeros(64), "nonsense")
                ]
            },
        )


@pytest.mark.parametrize("depth", [1, 2])
def test_bench_fast_forms_compute_the_library_forms(depth):
    base = load_backbone("builtin:tiny-xlmr", fingerprint=False).model
    ctx = FormContext(base, reduction_factor=4, seed=2)
    suffix = "" if depth == 1 else f"-stack-{depth}"
    library, fast = build_form(f"bottleneck{suffix}", ctx), build_form(f"bottleneck{suffix}-fast", ctx)
    assert fast.reference == f"bottleneck{suffix}" and _library_free(fast.module)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, base.config.vocab_size, (3, 10), generator=gen)
    batch = Batch(ids, torch.ones_like(ids))
    with torch.inference_mode():
        want, plain = library(batch), base(input_ids=ids, attention_mask=batch.attention_mask).last_hidden_state
        assert not torch.allclose(want, plain, atol=1e-3)
        torch.testing.assert_close(fast(batch), want, atol=ATOL, rtol=1e-4)
