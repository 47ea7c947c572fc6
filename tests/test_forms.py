"""Deployment forms compute what the unmerged adapters compute: a LoRA stack fused into one low-rank product,
and the same stack merged into the weights. (Which kinds have these forms at all: tests/test_kinds.py.)"""

import copy

import torch

from adapterx import store
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.forms import fused_form, merged_form
from adapterx.methods import parse_spec


def _stack(backbone, perturb_trainable):
    """Two LoRA adapters with non-zero B on different modules (r 4 on query/value, r 2 on query/key/dense)."""
    model = AdaptedModel(backbone)
    store.add_adapter(model, "inter", parse_spec({"kind": "lora", "r": 4}))
    store.add_adapter(
        model, "target", parse_spec({"kind": "lora", "r": 2, "target_modules": ["query", "key", "dense"]})
    )
    model.add_head("target", HeadSpec("classification", 3))
    for trainable, seed in (("target", 1), ("inter", 2)):
        store.activate(model, ["inter", "target"], trainable=trainable)
        perturb_trainable(model, seed=seed)
    store.activate(model, ["inter", "target"])
    return model.eval()


def test_fused_and_merged_stacks_equal_the_unmerged_stack(pristine_backbone, probe, perturb):
    model = _stack(pristine_backbone.fresh_copy(), perturb)
    bare = AdaptedModel(pristine_backbone.fresh_copy())
    bare.heads["target"] = copy.deepcopy(model.head)
    bare.set_head("target")
    with torch.inference_mode():
        expected = model(**probe).logits
        assert not torch.allclose(bare.eval()(**probe).logits, expected, atol=1e-3)  # the adapters matter
        for form in (fused_form(model), merged_form(model)):
            assert form is not None
            assert torch.allclose(form(**probe).logits, expected, atol=1e-5)
