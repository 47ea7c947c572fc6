"""Training: the loss falls, only adapter and head change, the base never does, resume is exact."""

import pytest
import torch

from adapterx import store
from adapterx.core.errors import AdapterxError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.setup import load_for_inference
from adapterx.methods import parse_spec
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import processor_for
from adapterx.training.loop import TrainConfig, train_adapter, trainable_state
from adapterx.training.workflow import train_task


def _model_and_data(backbone, kind="lora", rows=256):
    task = get_task("tiny-nli")
    processor = processor_for(task)
    data = processor.encode(task, load_split(task, "train", limit=rows), backbone.tokenizer)
    spec = {"kind": "lora", "r": 4} if kind == "lora" else {"kind": "bottleneck", "reduction_factor": 4}
    torch.manual_seed(0)  # adapter and head initialisation draw from the global generator
    model = AdaptedModel(backbone)
    store.add_adapter(model, "a", parse_spec(spec))
    store.activate(model, ["a"], trainable="a")
    model.add_head("a", HeadSpec("classification", 3, {"dropout": 0.1, **task.options["head"]}))
    return model, data, processor.collator(backbone.tokenizer)


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_training_lowers_the_loss_and_leaves_the_base_alone(backbone, tmp_path, kind):
    model, data, collate = _model_and_data(backbone, kind, rows=32)  # a set small enough to fit
    before = model.backbone.current_fingerprint()
    base_before = {n: t.clone() for n, t in model.backbone.base_tensors.items()}
    adapter_before = {k: v.clone() for k, v in trainable_state(model, "a", "a").items()}
    result = train_adapter(
        model,
        "a",
        "a",
        data,
        collate,
        TrainConfig(epochs=60, batch_size=32, learning_rate=1e-2, eval_every=10),
        tmp_path,
        progress=False,
    )
    first, last = result.losses[0][1], result.losses[-1][1]
    assert last < 0.8 * first, result.losses
    assert model.backbone.current_fingerprint() == before == model.backbone.fingerprint
    assert all(torch.equal(base_before[n], t) for n, t in model.backbone.base_tensors.items())
    changed = [k for k, v in trainable_state(model, "a", "a").items() if not torch.equal(v, adapter_before[k])]
    assert any(k.startswith("adapter.") for k in changed) and any(k.startswith("head.") for k in changed)
    counts = result.parameters
    assert 0 < counts["trainable"] < 0.2 * counts["total"]


def test_resume_continues_exactly(pristine_backbone, tmp_path):
    config = TrainConfig(max_steps=12, batch_size=16, learning_rate=5e-3, checkpoint_every=5, eval_every=100)
    model, data, collate = _model_and_data(pristine_backbone.fresh_copy(), rows=64)  # 4 batches an epoch
    train_adapter(model, "a", "a", data, collate, config, tmp_path / "full", progress=False)
    uninterrupted = trainable_state(model, "a", "a")

    # the "interrupted" run: same settings, but it stopped after step 5 (its checkpoint survives)
    first, data, collate = _model_and_data(pristine_backbone.fresh_copy(), rows=64)
    train_adapter(
        first,
        "a",
        "a",
        data,
        collate,
        TrainConfig(**{**vars(config), "max_steps": 12}),
        tmp_path / "cut",
        progress=False,
    )
    import shutil

    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-10")  # pretend it died before step 10
    resumed, data, collate = _model_and_data(pristine_backbone.fresh_copy(), rows=64)
    result = train_adapter(resumed, "a", "a", data, collate, config, tmp_path / "cut", resume=True, progress=False)
    assert result.resumed_from == 5 and result.steps == 12
    for key, value in trainable_state(resumed, "a", "a").items():
        assert torch.allclose(value, uninterrupted[key], atol=1e-6), (key, (value - uninterrupted[key]).abs().max())


def test_no_trainable_parameters_is_an_error(backbone, tmp_path):
    model, data, collate = _model_and_data(backbone)
    store.activate(model, ["a"], trainable=None)
    for p in model.heads.parameters():
        p.requires_grad_(False)
    with pytest.raises(AdapterxError, match="no trainable parameters"):
        train_adapter(model, "a", "a", data, collate, TrainConfig(max_steps=1), tmp_path, progress=False)


@pytest.mark.parametrize("strategy", ["stack", "continue"])
def test_transfer_strategies_train_and_reload(pristine_backbone, tmp_path, strategy, probe):
    spec = parse_spec({"kind": "lora", "r": 4})
    fast = TrainConfig(max_steps=6, batch_size=16, learning_rate=5e-3)
    inter = train_task(
        pristine_backbone,
        get_task("tiny-nli"),
        spec,
        fast,
        tmp_path / "inter",
        train_limit=96,
        eval_limit=32,
        progress=False,
    )
    target = train_task(
        pristine_backbone,
        get_task("tiny-xnli"),
        spec,
        fast,
        tmp_path / strategy,
        strategy=strategy,
        intermediate=inter.directory,
        train_limit=48,
        eval_limit=32,
        progress=False,
    )
    metadata = store.read_metadata(target.directory)
    assert metadata["training"]["strategy"] == strategy
    assert len(metadata["requires"]) == (1 if strategy == "stack" else 0)
    model = load_for_inference(pristine_backbone.fresh_copy(), target.directory)
    assert model.active_adapters == (["intermediate", "target"] if strategy == "stack" else ["target"])
    with torch.inference_mode():
        assert model(**probe).logits.shape == (2, 3)
    assert not (tmp_path / strategy / "checkpoints").exists()


def test_stack_refuses_a_changed_intermediate(pristine_backbone, tmp_path):
    spec = parse_spec({"kind": "lora", "r": 4})
    fast = TrainConfig(max_steps=3, batch_size=16)
    inter = train_task(
        pristine_backbone,
        get_task("tiny-nli"),
        spec,
        fast,
        tmp_path / "inter",
        train_limit=48,
        eval_limit=16,
        progress=False,
    )
    target = train_task(
        pristine_backbone,
        get_task("tiny-xnli"),
        spec,
        fast,
        tmp_path / "t",
        strategy="stack",
        intermediate=inter.directory,
        train_limit=48,
        eval_limit=16,
        progress=False,
    )
    train_task(
        pristine_backbone,
        get_task("tiny-nli"),
        spec,
        TrainConfig(max_steps=4, batch_size=16),
        tmp_path / "inter",
        train_limit=48,
        eval_limit=16,
        overwrite=True,
        progress=False,
    )  # retrained in place
    with pytest.raises(AdapterxError, match="trained on top of"):
        load_for_inference(pristine_backbone.fresh_copy(), target.directory)
