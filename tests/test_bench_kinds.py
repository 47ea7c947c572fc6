"""What `adapterx bench` knows about adapter kinds it reads from the registry: default forms, the kinds --train
measures and the spec each trains with, the positions a form's virtual tokens take."""

from __future__ import annotations

import pytest

from adapterx.bench.config import QUICK_OVERRIDES, BenchConfig
from adapterx.bench.forms import default_forms, train_kinds, virtual_tokens, with_defaults
from adapterx.bench.train_cost import kind_options
from adapterx.core.errors import AdapterxError
from adapterx.methods import get_method, kinds


def test_default_forms_are_each_kinds_own():
    forms = default_forms()
    assert forms[0] == "base" and len(set(forms)) == len(forms)
    for kind in kinds():
        assert set(get_method(kind).bench_default_forms) <= set(forms)
    assert {"lora-merged", "bottleneck-fast", "ia3-merged", "ia3-stack-2-fused"} <= set(forms)
    assert len(default_forms(quick=True)) < len(forms) and "lora-mixed-4-gathered" in default_forms(quick=True)
    cfg = with_defaults(BenchConfig(**QUICK_OVERRIDES, quick=True))
    assert cfg.forms == default_forms(quick=True) and cfg.train_kinds == train_kinds()


def test_train_kinds_and_their_specs_come_from_the_kinds():
    assert train_kinds() == ("full", *kinds()) and "ia3" in train_kinds()
    assert with_defaults(BenchConfig(train_kinds=("ia3", "full"))).train_kinds == ("ia3", "full")
    with pytest.raises(AdapterxError, match=r"--train-kinds \['ia4'\]: unknown \['ia4'\]; known: full, .*ia3"):
        with_defaults(BenchConfig(train_kinds=("ia4",)))
    job = {"rank": 4, "reduction_factor": 8, "virtual_tokens": 16}
    assert kind_options("lora", job) == {**get_method("lora").spec_type(r=4, alpha=8.0).to_json()}
    assert kind_options("bottleneck", job)["reduction_factor"] == 8
    assert kind_options("prefix", job)["num_virtual_tokens"] == 16
    assert kind_options("ia3", job) == get_method("ia3").spec_type().to_json() and kind_options("full", job) is None


def test_virtual_tokens_of_a_form_are_its_kinds_word():
    assert virtual_tokens("prefix-32") == 32 and virtual_tokens("prompt-8") == 8
    assert virtual_tokens("prompt") == get_method("prompt").spec_type().num_virtual_tokens  # the generic form
    assert virtual_tokens("lora-stack-2-fused") == virtual_tokens("ia3-merged") == virtual_tokens("base") == 0
