"""Load-time composition: each mode equals a hand-built reference of the same math, mixed batches equal
single-adapter runs, manifests reload (and refuse changed files), and wrong requests fail naming the file."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from adapterx.core.backbone import load_backbone
from adapterx.core.errors import (
    AdapterFileError,
    AdapterxError,
    BackboneMismatchError,
    CompositionError,
    UnknownNameError,
)
from adapterx.deploy.compose import Mixed, Stack, Weighted, compose, from_dict, load_manifest, read_parts, validate

ATOL = 2e-5


@pytest.fixture(scope="module")
def base():
    return load_backbone("builtin:tiny-xlmr")


@pytest.fixture(scope="module")
def saved(base, tmp_path_factory, saved_adapter):
    make_adapter = saved_adapter
    root = tmp_path_factory.mktemp("adapters")
    paths = {
        "la": make_adapter(base.fresh_copy(), root / "la", r=4, alpha=8.0, seed=1),
        "lb": make_adapter(
            base.fresh_copy(), root / "lb", r=4, alpha=16.0, seed=2, target_modules=["query", "value", "dense"]
        ),
        "lr2": make_adapter(base.fresh_copy(), root / "lr2", r=2, alpha=4.0, seed=3),
        "lpair": make_adapter(base.fresh_copy(), root / "lpair", r=4, seed=4, labels=["no", "yes"]),
        "ba": make_adapter(base.fresh_copy(), root / "ba", "bottleneck", seed=5, reduction_factor=8),
        "bb": make_adapter(base.fresh_copy(), root / "bb", "bottleneck", seed=6, reduction_factor=16),
        "other": make_adapter(load_backbone("builtin:tiny-xlmr@7"), root / "other", r=4, seed=7),
    }
    return paths


@pytest.fixture(scope="module")
def batch(base):
    enc = base.tokenizer(
        ["the happy dog eats the apple", "der hund isst nicht den apfel heute", "le chat dort", "the cat"],
        padding=True,
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"]


# ============================================================================== hand-built references
def lora_factors(path):
    """{module name: (A, B, scaling)} read straight from the saved peft files."""
    config = json.loads((path / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    state = load_file(str(path / "adapter_model.safetensors"))
    out = {}
    for key, a in state.items():
        if ".lora_A." in key:
            module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
            out[module] = (a, state[key.replace("lora_A", "lora_B")], scaling)
    return out


def head_logits(path, hidden):
    """adapterx's classification head, by hand: out_proj(tanh(dense(h[<s>])))."""
    w = load_file(str(path / "head.safetensors"))
    x = torch.tanh(F.linear(hidden[:, 0], w["dense.weight"], w["dense.bias"]))
    return F.linear(x, w["out_proj.weight"], w["out_proj.bias"])


@torch.no_grad()
def reference_with_deltas(base, deltas, batch):
    """A plain copy of the base with W += delta for each named linear layer; returns last hidden states."""
    plain = base.fresh_copy().model
    for module, delta in deltas.items():
        plain.get_submodule(module).weight += delta
    return plain(input_ids=batch[0], attention_mask=batch[1]).last_hidden_state


def exact_deltas(paths_weights):
    """Σ_i w_i s_i B_i A_i per layer (stack / sum of LoRA, and the exact weighted merge)."""
    deltas = {}
    for path, w in paths_weights:
        for module, (a, b, s) in lora_factors(path).items():
            deltas[module] = deltas.get(module, 0) + w * s * b @ a
    return deltas


def peft_linear_deltas(paths_weights):
    """peft's "linear" combination: (Σ √(w_i s_i) B_i) (Σ √(w_i s_i) A_i), factor-wise (cross terms included)."""
    sums: dict = {}
    for path, w in paths_weights:
        for module, (a, b, s) in lora_factors(path).items():
            k = (w * s) ** 0.5
            sa, sb = sums.get(module, (0, 0))
            sums[module] = (sa + k * a, sb + k * b)
    return {m: sb @ sa for m, (sa, sb) in sums.items()}


def bottleneck_weights(path):
    state = load_file(str(path / "adapter.safetensors"))
    layers = {}
    for key, t in state.items():
        layer = int(key.split(".")[2])
        layers.setdefault(layer, {})[key.split(".adapters.")[1].split(".", 1)[1]] = t
    return layers


def adapter_fn(w):
    return lambda x: F.linear(
        torch.relu(F.linear(x, w["adapter_down.0.weight"], w["adapter_down.0.bias"])),
        w["adapter_up.weight"],
        w["adapter_up.bias"],
    )


@torch.no_grad()
def reference_bottleneck(base, block, paths, batch):
    """Pfeiffer adapters after each FFN, by hand. h = dense(intermediate), r = the attention output:
    stack: x = h; per adapter: x = f(LN(x + r)) + x;                 output LN(x + r)
    average: x = Σ w_i (f_i(LN(h + r)) + h);                          output LN(x + r)"""
    plain = base.fresh_copy().model
    layers_of = {n: bottleneck_weights(p) for n, p in paths.items()}
    for i, layer in enumerate(plain.encoder.layer):
        out = layer.output

        def forward(hidden, input_tensor, out=out, i=i):
            h = out.dense(hidden)
            if isinstance(block, Weighted):
                y = out.LayerNorm(h + input_tensor)
                x = sum(w * (adapter_fn(layers_of[n][i])(y) + h) for n, w in zip(block.names(), block.weights))
            else:
                x = h
                for n in block.names():
                    x = adapter_fn(layers_of[n][i])(out.LayerNorm(x + input_tensor)) + x
            return out.LayerNorm(x + input_tensor)

        out.forward = forward
    return plain(input_ids=batch[0], attention_mask=batch[1]).last_hidden_state


# ============================================================================== modes vs references
@pytest.mark.parametrize("mode", ["stack", "sum"])
def test_lora_stack_and_sum_add_every_delta(base, saved, batch, mode):
    composed = compose(base.fresh_copy(), {"inter": saved["la"], "target": saved["lb"]}, mode)
    got = composed(*batch)
    hidden = reference_with_deltas(base, exact_deltas([(saved["la"], 1.0), (saved["lb"], 1.0)]), batch)
    torch.testing.assert_close(got, head_logits(saved["lb"], hidden), atol=ATOL, rtol=1e-4)
    assert composed.head == "target" and composed.active == ["inter", "target"]


def test_lora_weighted_is_the_exact_weighted_sum_of_deltas(base, saved, batch):
    weights = [0.7, -0.3]
    composed = compose(base.fresh_copy(), {"p": saved["la"], "b": saved["lr2"]}, "weighted", weights=weights)
    hidden = reference_with_deltas(base, exact_deltas([(saved["la"], 0.7), (saved["lr2"], -0.3)]), batch)
    torch.testing.assert_close(composed(*batch), head_logits(saved["lr2"], hidden), atol=ATOL, rtol=1e-4)


def test_lora_linear_is_peft_factorwise_average(base, saved, batch):
    composed = compose(
        base.fresh_copy(),
        {"p": saved["la"], "b": saved["lb"]},
        Weighted("p", "b", weights=[0.6, 0.4], method="linear"),
        head="p",
    )
    hidden = reference_with_deltas(base, peft_linear_deltas([(saved["la"], 0.6), (saved["lb"], 0.4)]), batch)
    torch.testing.assert_close(composed(*batch), head_logits(saved["la"], hidden), atol=ATOL, rtol=1e-4)


def test_ties_and_dare_build_and_change_the_output(base, saved, batch):
    parts = {"p": saved["la"], "b": saved["lb"]}
    plain = compose(base.fresh_copy(), parts, "linear", head="p")(*batch)
    torch.manual_seed(0)
    for mode in ("ties", "dare_linear"):
        composed = compose(base.fresh_copy(), parts, mode, weights=[0.5, 0.5], density=0.5, head="p")
        assert composed.active == [f"{mode}_p_b"]
        logits = composed(*batch)
        assert torch.isfinite(logits).all() and not torch.allclose(logits, plain, atol=1e-4)


def test_bottleneck_stack_equals_reference(base, saved, batch):
    paths = {"inter": saved["ba"], "target": saved["bb"]}
    composed = compose(base.fresh_copy(), paths, "stack")
    hidden = reference_bottleneck(base, composed.composition, paths, batch)
    torch.testing.assert_close(composed(*batch), head_logits(saved["bb"], hidden), atol=ATOL, rtol=1e-4)


def test_fused_bottleneck_stack_equals_reference_and_average_has_none(base, saved, batch):
    paths = {"inter": saved["ba"], "target": saved["bb"]}
    fused = compose(base.fresh_copy(), paths, "stack").fused()
    hidden = reference_bottleneck(base, Stack("inter", "target"), paths, batch)
    with torch.no_grad():
        torch.testing.assert_close(fused(*batch).logits, head_logits(saved["bb"], hidden), atol=ATOL, rtol=1e-4)
    assert compose(base.fresh_copy(), paths, "weighted").fused() is None


def test_bottleneck_weighted_equals_reference_average(base, saved, batch):
    paths = {"p": saved["ba"], "b": saved["bb"]}
    composed = compose(base.fresh_copy(), paths, "weighted", weights=[0.25, 0.75])
    hidden = reference_bottleneck(base, composed.composition, paths, batch)
    torch.testing.assert_close(composed(*batch), head_logits(saved["bb"], hidden), atol=ATOL, rtol=1e-4)


# ============================================================================== many adapters, one base
def single_run(base, path, batch):
    return compose(base.fresh_copy(), {"only": path}, "stack")(*batch)


@pytest.mark.parametrize("family,fast", [("lora", False), ("lora", True), ("bottleneck", False)])
def test_mixed_batch_rows_equal_single_adapter_runs(base, saved, batch, family, fast):
    parts = (
        {"p": saved["la"], "b": saved["lb"], "c": saved["lpair"]}
        if family == "lora"
        else {"p": saved["ba"], "b": saved["bb"]}
    )
    composed = compose(base.fresh_copy(), parts, "mixed")
    rows = ["c", "p", "b", "p"] if family == "lora" else ["b", "p", "b", "p"]
    got = composed.forward_rows(*batch, rows, fast=fast)
    singles = {n: single_run(base, p, batch) for n, p in parts.items()}
    for j, name in enumerate(rows):
        torch.testing.assert_close(got[j], singles[name][j], atol=ATOL, rtol=1e-4)
    assert got[0].shape[-1] == (2 if family == "lora" else 3)  # row 0 is read by its own adapter's head


# ============================================================================== manifest
def test_manifest_reload_gives_the_same_logits(base, saved, batch, tmp_path):
    parts = {"inter": saved["la"], "target": saved["lr2"]}
    composed = compose(base.fresh_copy(), parts, "weighted", weights=[0.5, 0.5])
    want = composed(*batch)
    file = composed.save(tmp_path / "setup.json")
    data = json.loads(file.read_text())
    assert [p["name"] for p in data["parts"]] == ["inter", "target"]
    assert data["backbone"]["fingerprint"] == base.fingerprint
    assert all(d.startswith("sha256:") for p in data["parts"] for d in p["files"].values())
    torch.testing.assert_close(load_manifest(file, base.fresh_copy())(*batch), want)

    bundle = composed.save(tmp_path / "bundle")  # self-contained: survives a move
    moved = tmp_path / "moved"
    shutil.move(str(bundle.parent), str(moved))
    again = load_manifest(moved, base.fresh_copy())
    torch.testing.assert_close(again(*batch), want)
    assert again.composition == composed.composition


def test_manifest_refuses_a_changed_part(base, saved, batch, tmp_path):
    composed = compose(base.fresh_copy(), {"inter": saved["la"], "target": saved["lb"]}, "stack")
    manifest = composed.save(tmp_path / "bundle")
    weights = tmp_path / "bundle" / "parts" / "target" / "adapter_model.safetensors"
    other = saved["lr2"] / "adapter_model.safetensors"
    shutil.copy(other, weights)
    with pytest.raises(CompositionError, match=r"parts/target/adapter_model.safetensors: changed"):
        load_manifest(manifest, base.fresh_copy())
    weights.unlink()
    with pytest.raises(AdapterFileError, match=r"adapter_model.safetensors: missing"):
        load_manifest(manifest, base.fresh_copy())


# ============================================================================== errors
def test_different_backbones_are_refused_naming_the_file(base, saved):
    with pytest.raises(BackboneMismatchError, match=str(saved["other"])):
        compose(base.fresh_copy(), {"p": saved["la"], "b": saved["other"]}, "stack")


def test_weighted_merge_of_heads_with_different_labels_is_refused(base, saved):
    with pytest.raises(CompositionError, match=r"different label sets.*lpair/adapterx.json.*\['no', 'yes'\]"):
        compose(base.fresh_copy(), {"p": saved["la"], "b": saved["lpair"]}, "weighted")


def test_stack_uses_the_target_head_whatever_the_intermediate_labels(base, saved, batch):
    composed = compose(base.fresh_copy(), {"inter": saved["lpair"], "target": saved["la"]}, "stack")
    assert composed.head == "target" and composed(*batch).shape == (4, 3)
    assert "inter" not in composed.model.heads


def test_mixing_lora_and_bottleneck_says_which_parts_can_merge(base, saved):
    with pytest.raises(CompositionError) as info:
        compose(base.fresh_copy(), {"inter": saved["ba"], "target": saved["la"]}, "stack")
    message = str(info.value)
    assert "lora (mergeable" in message and "bottleneck (not mergeable" in message
    assert str(saved["ba"]) in message and str(saved["la"]) in message


def test_unknown_names_and_missing_files(base, saved, tmp_path):
    parts = {"p": saved["la"], "b": saved["lb"]}
    with pytest.raises(UnknownNameError, match="unknown head.*'nope'.*known: b, p"):
        compose(base.fresh_copy(), parts, "stack", head="nope")
    with pytest.raises(UnknownNameError, match="unknown adapter 'c'"):
        validate(Stack("p", "c"), read_parts(parts))
    with pytest.raises(UnknownNameError, match="unknown composition mode"):
        compose(base.fresh_copy(), parts, "average")
    composed = compose(base.fresh_copy(), parts, "mixed")
    with pytest.raises(UnknownNameError, match="unknown adapter 'zz'"):
        composed.forward_rows(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), ["zz"])
    broken = tmp_path / "broken"
    shutil.copytree(saved["la"], broken)
    (broken / "head.safetensors").unlink()
    with pytest.raises(AdapterFileError, match=r"broken/head.safetensors: missing"):
        compose(base.fresh_copy(), {"p": broken}, "stack")
    with pytest.raises(AdapterFileError, match=r"nowhere: no such adapter directory"):
        compose(base.fresh_copy(), {"p": tmp_path / "nowhere"}, "stack")


def test_invalid_requests_are_explained(base, saved):
    lora = read_parts({"p": saved["la"], "b": saved["lb"], "r2": saved["lr2"]})
    bottleneck = read_parts({"p": saved["ba"], "b": saved["bb"]})
    with pytest.raises(CompositionError, match="needs adapters of one rank.*use method 'weighted'"):
        validate(Weighted("p", "r2", method="ties", density=0.5), lora)
    with pytest.raises(CompositionError, match="2 weights for 3 adapters"):
        validate(Weighted("p", "b", "r2", weights=[0.5, 0.5]), lora)
    with pytest.raises(CompositionError, match="needs a density"):
        validate(Weighted("p", "b", method="dare_linear"), lora)
    with pytest.raises(CompositionError, match="'sum' adds LoRA weight deltas.*Use 'stack'"):
        compose(base.fresh_copy(), {"p": saved["ba"], "b": saved["bb"]}, "sum")
    with pytest.raises(CompositionError, match="only 'weighted' exists"):
        validate(Weighted("p", "b", method="ties", density=0.5), bottleneck)
    with pytest.raises(CompositionError, match="weights that sum to 1"):
        validate(Weighted("p", "b", weights=[1.0, 1.0]), bottleneck)
    with pytest.raises(CompositionError, match="cannot hold stack"):
        validate(Weighted("p", Stack("b")), lora)
    with pytest.raises(CompositionError, match="cannot hold mixed"):
        validate(Stack("p", Mixed("b", "r2")), lora)


def test_nested_stack_over_a_weighted_merge(base, saved, batch):
    block = Stack("lang", Weighted("p", "b", weights=[0.5, 0.5]))
    assert from_dict(json.loads(json.dumps(block.to_dict()))) == block
    composed = compose(base.fresh_copy(), {"lang": saved["lb"], "p": saved["la"], "b": saved["lr2"]}, block)
    deltas = exact_deltas([(saved["lb"], 1.0), (saved["la"], 0.5), (saved["lr2"], 0.5)])
    hidden = reference_with_deltas(base, deltas, batch)
    torch.testing.assert_close(composed(*batch), head_logits(saved["lr2"], hidden), atol=ATOL, rtol=1e-4)


# ============================================================================== CLI
def test_cli_compose_prints_parts_counts_and_logits(saved, tmp_path, capsys, compose_cli):
    run_cli = compose_cli
    rc = run_cli(
        [
            "compose",
            "--adapter",
            f"inter={saved['la']}",
            "--adapter",
            f"target={saved['lb']}",
            "--mode",
            "stack",
            "--check",
            "der hund isst den apfel",
            "--output",
            str(tmp_path / "c.json"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "stack[inter, target]" in out and "head used" in out and "parameters: base" in out
    assert "entailment" in out and "-> " in out and "wrote" in out
    rc = run_cli(["compose", "--manifest", str(tmp_path / "c.json"), "--check", "der hund isst den apfel"])
    again = capsys.readouterr().out
    assert rc == 0
    assert out.split("check ")[1].splitlines()[0] == again.split("check ")[1].splitlines()[0]


@pytest.mark.parametrize("family", ["lora", "bottleneck"])
def test_cli_compose_fused_form_matches_the_library(saved, capsys, family, compose_cli):
    run_cli = compose_cli
    parts = ("la", "lb") if family == "lora" else ("ba", "bb")
    rc = run_cli(
        [
            "compose",
            "--adapter",
            f"inter={saved[parts[0]]}",
            "--adapter",
            f"target={saved[parts[1]]}",
            "--mode",
            "stack",
            "--check",
            "der hund isst den apfel",
            "--fused",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "fused form: " in out
    assert float(out.split("max |fused - library| = ")[1].split()[0]) < 1e-4
    with pytest.raises(AdapterxError, match="no fused form"):
        run_cli(
            [
                "compose",
                "--adapter",
                f"p={saved['ba']}",
                "--adapter",
                f"b={saved['bb']}",
                "--mode",
                "weighted",
                "--fused",
            ]
        )


def test_cli_help_teaches_the_modes(capsys, compose_cli):
    with pytest.raises(SystemExit):
        compose_cli(["compose", "--help"])
    text = capsys.readouterr().out
    for word in ("stack", "sum", "weighted", "ties", "dare_linear", "mixed", "manifest", "examples"):
        assert word in text


def test_names_inside_a_library_prefix_work_and_clashing_ones_are_refused(base, saved, batch):
    """peft warns about names contained in its prefix "lora_" ('a', 'lora'), which reload exactly; names beginning
    with it ('lora_A') lose their weights in peft, so they are refused before anything is loaded."""
    want = compose(base.fresh_copy(), {"inter": saved["la"], "target": saved["lb"]}, "stack")(*batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = compose(base.fresh_copy(), {"a": saved["la"], "lora": saved["lb"]}, "stack")(*batch)
    assert torch.equal(got, want)
    assert not [w for w in caught if "prefix" in str(w.message)]
    with pytest.raises(CompositionError, match="'lora_A' begins with 'lora_'"):
        compose(base.fresh_copy(), {"lora_A": saved["la"]}, "stack")


def test_a_stacked_target_needs_the_adapter_it_was_trained_on(pristine_backbone, tmp_path):
    from adapterx.methods import parse_spec
    from adapterx.tasks import get_task
    from adapterx.training.loop import TrainConfig
    from adapterx.training.workflow import train_task

    spec, fast = parse_spec({"kind": "lora", "r": 2}), TrainConfig(max_steps=2, batch_size=16)
    inter = train_task(
        pristine_backbone,
        get_task("tiny-nli"),
        spec,
        fast,
        tmp_path / "inter",
        train_limit=32,
        eval_limit=16,
        progress=False,
    )
    target = train_task(
        pristine_backbone,
        get_task("tiny-xnli"),
        spec,
        fast,
        tmp_path / "target",
        strategy="stack",
        intermediate=inter.directory,
        train_limit=32,
        eval_limit=16,
        progress=False,
    )
    with pytest.raises(CompositionError, match=r"trained on top of .*inter/adapter.*Add it below"):
        compose(pristine_backbone.fresh_copy(), {"tgt": target.directory})
    both = compose(pristine_backbone.fresh_copy(), [("inter", inter.directory), ("tgt", target.directory)])
    assert both.active == ["inter", "tgt"]
