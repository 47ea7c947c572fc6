"""Bench forms of the prompt-learning kinds: built, run, output aligned with the input like every other form."""

import torch

from adapterx.bench.forms import Batch, FormContext, build_form, check_form_names
from adapterx.core.backbone import load_backbone


def test_prefix_and_prompt_forms_run_with_input_length_outputs():
    base = load_backbone("builtin:tiny-xlmr", fingerprint=False).model
    ctx = FormContext(base=base)
    batch = Batch(torch.randint(5, 100, (2, 12)), torch.ones(2, 12, dtype=torch.long))
    check_form_names(["prefix-16", "prefix-32", "prompt-8"])
    with torch.inference_mode():
        expected = build_form("base", ctx)(batch)
        for name in ("prefix-16", "prefix-32", "prompt-8"):
            out = build_form(name, ctx)(batch)
            assert out.shape == expected.shape, name
            assert not torch.allclose(out, expected), f"{name} left the output unchanged"
    assert all(not p.requires_grad for p in base.parameters())
