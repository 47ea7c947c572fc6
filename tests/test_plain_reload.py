"""Saved adapters are the libraries' own files: in a fresh Python process where adapterx cannot be imported, plain
peft (``PeftModel.from_pretrained``) loads a saved LoRA adapter and the adapters library (``load_adapter`` with
``use_safetensors=True``) a saved bottleneck adapter onto the backbone written to disk, and both give the hidden
states adapterx gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig

import pytest
import torch

from adapterx import store
from adapterx.core.model import AdaptedModel

# Run with -S: site-packages is put on the path by hand and its .pth files are never run, so the editable install
# of adapterx (a .pth import hook) is absent, as is the repository (the process starts in an empty directory).
FRESH_PROCESS = r"""
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
assert importlib.util.find_spec("adapterx") is None, "adapterx must not be importable here"
import adapters
import torch
from peft import PeftModel
from transformers import XLMRobertaModel

base_dir, lora_dir, bottleneck_dir = sys.argv[2:5]
batch = json.loads(sys.argv[5])
ids, mask = torch.tensor(batch["input_ids"]), torch.tensor(batch["attention_mask"])
out = {}
with torch.no_grad():
    lora = PeftModel.from_pretrained(XLMRobertaModel.from_pretrained(base_dir, add_pooling_layer=False), lora_dir)
    out["lora"] = lora.eval()(input_ids=ids, attention_mask=mask).last_hidden_state.tolist()
    model = XLMRobertaModel.from_pretrained(base_dir, add_pooling_layer=False)
    adapters.init(model)
    model.load_adapter(bottleneck_dir, load_as="b", with_head=False, use_safetensors=True, set_active=True)
    out["bottleneck"] = model.eval()(input_ids=ids, attention_mask=mask).last_hidden_state.tolist()
out["imported"] = sorted(m for m in sys.modules if m.split(".")[0] == "adapterx")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def saved(pristine_backbone, tmp_path_factory, saved_adapter):
    root = tmp_path_factory.mktemp("plain")
    pristine_backbone.model.save_pretrained(root / "base", safe_serialization=True)
    return root / "base", {
        "lora": saved_adapter(
            pristine_backbone.fresh_copy(), root / "lora", r=4, seed=21, target_modules=["query", "value", "dense"]
        ),
        "bottleneck": saved_adapter(
            pristine_backbone.fresh_copy(), root / "bottleneck", "bottleneck", seed=22, reduction_factor=4
        ),
    }


def _adapterx_hidden(backbone, directory, probe) -> torch.Tensor:
    model = AdaptedModel(backbone)
    store.load_adapter(model, directory, name="x")
    store.activate(model, ["x"])
    with torch.inference_mode():
        return model.eval().encode(probe["input_ids"], probe["attention_mask"]).last_hidden_state


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_plain_libraries_reload_what_adapterx_saved(pristine_backbone, saved, probe, tmp_path):
    base_dir, adapters = saved
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    batch = json.dumps({k: probe[k].tolist() for k in ("input_ids", "attention_mask")})
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            FRESH_PROCESS,
            sysconfig.get_paths()["purelib"],
            str(base_dir),
            str(adapters["lora"]),
            str(adapters["bottleneck"]),
            batch,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["imported"] == []
    base = pristine_backbone.fresh_copy()
    with torch.inference_mode():
        plain = base.model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).last_hidden_state
    for kind, directory in adapters.items():
        want = _adapterx_hidden(pristine_backbone.fresh_copy(), directory, probe)
        got = torch.tensor(data[kind])
        assert not torch.allclose(want, plain, atol=1e-3), kind  # the adapter changes the output
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=kind)
