"""adapterx.deploy.fastlora computes what peft computes (fused stacks, gathered mixed batches, merges). The peft
models are the bench's LoRA forms (served through adapterx.store); their factors come from `Method.lora_factors`."""

import pytest
import torch
from torch import nn

from adapterx import store
from adapterx.bench.adapted import adapter_name
from adapterx.bench.forms import FormContext, share_copy
from adapterx.bench.lora_forms import lora_factors, lora_model
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import CompositionError
from adapterx.deploy import fastlora
from adapterx.methods import get_method

ATOL = 1e-5


@pytest.fixture(scope="module")
def ctx():
    base = load_backbone("builtin:tiny-xlmr", fingerprint=False).model
    return FormContext(base, rank=4, seed=3)


@pytest.fixture(scope="module")
def batch(ctx):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, ctx.base.config.vocab_size, (5, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # one padded row
    return ids, mask


def hidden(model, batch, **kw):
    with torch.inference_mode():
        return model(input_ids=batch[0], attention_mask=batch[1], **kw).last_hidden_state


def peft_model(ctx, n, active=None, base=None):
    """The peft model of adapters a0..a{n-1} (the context's weights), adapters `active` (default: all) active."""
    model = lora_model(ctx, n, base=base)
    store.activate(model, [adapter_name(i) for i in (range(n) if active is None else active)])
    return model.encoder


def test_factors_read_back_are_the_factors_set(ctx):
    model = lora_model(ctx, 2)
    given = lora_factors(ctx, [1])
    read = get_method("lora").lora_factors(model, adapter_name(1))
    assert set(read) == set(given)
    for module, f in read.items():
        assert torch.equal(f.A, given[module][0].A) and torch.equal(f.B, given[module][0].B)
        assert f.scaling == given[module][0].scaling == 2.0


def test_lora_changes_the_output(ctx, batch):
    assert not torch.allclose(hidden(peft_model(ctx, 1), batch), hidden(ctx.base, batch), atol=1e-3)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_fused_stack_equals_peft_stack(ctx, batch, k):
    served = lora_model(ctx, k)  # all k active
    naive = served.encoder
    method = get_method("lora")
    each = [method.lora_factors(served, adapter_name(i)) for i in range(k)]
    factors = {m: [f[m] for f in each] for m in each[0]}
    assert set(factors) == set(lora_factors(ctx, range(k)))
    fused = fastlora.apply_fused_lora(share_copy(ctx.base), factors)
    layer = fused.encoder.layer[0].attention.self.query
    assert isinstance(layer, fastlora.FusedLoraLinear) and layer.rank == k * ctx.rank
    assert layer.base.weight is ctx.base.encoder.layer[0].attention.self.query.weight  # weights shared
    torch.testing.assert_close(hidden(fused, batch), hidden(naive, batch), atol=ATOL, rtol=1e-4)


def test_gathered_mixed_batch_equals_per_row_single_adapter_runs(ctx, batch):
    n = 3
    names = [adapter_name(i) for i in range(n)]
    multi = fastlora.apply_gathered_lora(share_copy(ctx.base), lora_factors(ctx, range(n)), names)
    rows = [2, 0, 1, 1, 2]
    mixed = hidden(multi, batch, adapter_ids=torch.tensor(rows))
    singles = {i: peft_model(ctx, 1 + i, active=[i]) for i in range(n)}
    for j, i in enumerate(rows):
        single = singles[i]
        one_row = (batch[0][j : j + 1], batch[1][j : j + 1])
        torch.testing.assert_close(mixed[j : j + 1], hidden(single, one_row), atol=ATOL, rtol=1e-4)
    # and equal to peft's own mixed batch (adapter_names)
    naive = peft_model(ctx, n)
    torch.testing.assert_close(
        mixed, hidden(naive, batch, adapter_names=[names[i] for i in rows]), atol=ATOL, rtol=1e-4
    )
    assert multi.adapter_ids(["a2", "a0"]).tolist() == [2, 0]


def test_merged_equals_unmerged(ctx, batch):
    unmerged = hidden(peft_model(ctx, 2, active=[0]), batch)
    merged_model = peft_model(
        ctx, 1, base=share_copy(ctx.base, clone=lambda n: n.endswith(("query.weight", "value.weight")))
    ).merge_and_unload()
    assert type(merged_model) is type(ctx.base)
    torch.testing.assert_close(hidden(merged_model, batch), unmerged, atol=1e-4, rtol=0)
    # fastlora's own merge of a 2-stack equals the fused, unmerged 2-stack
    f = lora_factors(ctx, range(2))
    own = fastlora.merge_lora(share_copy(ctx.base, clone=lambda n: n.endswith(("query.weight", "value.weight"))), f)
    fused = fastlora.apply_fused_lora(share_copy(ctx.base), f)
    torch.testing.assert_close(hidden(own, batch), hidden(fused, batch), atol=1e-4, rtol=0)


def test_base_is_left_untouched(ctx, batch):
    before = hidden(ctx.base, batch)
    peft_model(
        ctx, 1, base=share_copy(ctx.base, clone=lambda n: n.endswith(("query.weight", "value.weight")))
    ).merge_and_unload()
    fastlora.apply_fused_lora(share_copy(ctx.base), lora_factors(ctx, [0]))
    torch.testing.assert_close(hidden(ctx.base, batch), before, atol=0, rtol=0)
    assert type(ctx.base.encoder.layer[0].attention.self.query) is nn.Linear


def test_layer_math_and_ranks():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    f1 = fastlora.LoraFactors(torch.randn(2, 6), torch.randn(5, 2), 0.5)
    f2 = fastlora.LoraFactors(torch.randn(3, 6), torch.randn(5, 3), 2.0)
    x = torch.randn(4, 7, 6)
    want = base(x) + 0.5 * x @ f1.A.T @ f1.B.T + 2.0 * x @ f2.A.T @ f2.B.T
    torch.testing.assert_close(fastlora.FusedLoraLinear(base, [f1, f2])(x), want)
    rows = fastlora.RowAdapters(2)
    g = fastlora.GatheredLoraLinear(base, [f1, f2], rows)  # ranks 2 and 3: padded
    with rows.select([1, 0, 0, 1]):
        out = g(x)
        out2d = g(x[:, 0])
    for j, f in enumerate([f2, f1, f1, f2]):
        torch.testing.assert_close(out[j], base(x[j]) + f.scaling * x[j] @ f.A.T @ f.B.T)
    torch.testing.assert_close(out2d, out[:, 0])


def test_errors():
    base = nn.Linear(6, 5)
    with pytest.raises(CompositionError):
        fastlora.LoraFactors(torch.zeros(2, 6), torch.zeros(5, 3))
    with pytest.raises(CompositionError):
        fastlora.FusedLoraLinear(base, [fastlora.LoraFactors(torch.zeros(2, 7), torch.zeros(5, 2))])
    rows = fastlora.RowAdapters(1)
    g = fastlora.GatheredLoraLinear(base, [fastlora.LoraFactors(torch.zeros(2, 6), torch.zeros(5, 2))], rows)
    with pytest.raises(CompositionError, match="adapter ids"):
        g(torch.zeros(2, 3, 6))
    with pytest.raises(CompositionError, match=r"\[0, 1\)"):
        with rows.select([0, 1]):
            pass
