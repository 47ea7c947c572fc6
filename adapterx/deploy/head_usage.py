"""What a merged checkpoint's README says about a head saved beside the encoder (head.safetensors + head.json):
plain torch code for the heads whose math is a few lines (a mean-pooled classification head), or plainly that
adapterx is needed to rebuild the others. tests/test_interop.py runs the code in a process without adapterx."""

from __future__ import annotations

from adapterx.core.heads import HeadSpec

MEAN_POOLED_CLASSIFIER = """\
import json
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

encoder = AutoModel.from_pretrained(PATH, add_pooling_layer=False).eval()
tokenizer = AutoTokenizer.from_pretrained(PATH)
head = load_file(f"{PATH}/head.safetensors")          # dense.* and out_proj.* of the classification head
labels = json.load(open(f"{PATH}/head.json"))["labels"]

def classify(texts, pairs=None):
    batch = tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)   # mean over the real tokens
        x = torch.tanh(pooled @ head["dense.weight"].T + head["dense.bias"])
        return x @ head["out_proj.weight"].T + head["out_proj.bias"]   # logits, one column per label
"""


def head_usage(spec: HeadSpec) -> tuple[bool, list[str]]:
    """(whether the head runs without adapterx, README lines on how to run it)."""
    if spec.kind == "classification" and spec.options.get("pooling", "cls") == "mean":
        return True, [
            "The task head is a mean-pooled classification head (transformers has no class with this "
            "pooling): head.safetensors holds its weights, head.json its labels. It is a few lines of "
            "torch; neither adapterx nor peft is needed:",
            "",
            "```python",
            'PATH = "<this directory>"',
            MEAN_POOLED_CLASSIFIER.rstrip(),
            "```",
            "",
        ]
    return False, [
        f"The task head ({spec.kind}; head.safetensors, spec in head.json) has no plain transformers "
        f"equivalent: rebuilding it needs adapterx, `adapterx.core.heads.build_head(hidden_size, "
        f"HeadSpec.from_json(spec))`, applied to the encoder's `last_hidden_state`. The encoder itself "
        f"loads with transformers alone (AutoModel).",
        "",
    ]
