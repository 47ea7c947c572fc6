"""Fold adapters (LoRA deltas, (IA)³ vectors) into the base weights and save a plain transformers checkpoint.

The merged checkpoint needs neither adapterx nor peft. Heads with a transformers twin of the same math
(registered with the head kind, per architecture: adapterx.core.heads.register_head) are saved inside it,
with ``id2label``/``label2id`` in config.json:
  classification (pooling "cls")  -> ``AutoModelForSequenceClassification`` (XLM-R: RobertaClassificationHead,
                                     ``classifier.dense`` + tanh + ``classifier.out_proj`` on <s>; BERT: the
                                     pooler ``bert.pooler.dense`` + tanh on [CLS], then ``classifier``)
  tagging                         -> ``AutoModelForTokenClassification`` (``classifier`` on every token)
Other heads (mean-pooled classification, span QA with its padding mask, multiple choice, retrieval) have no
such twin: the encoder is saved for ``AutoModel`` and the head beside it as ``head.safetensors`` +
``head.json``, and README.md in the directory says so.

Every merge is checked before anything is written: the checkpoint is saved to a temporary directory,
reloaded with plain transformers, and its logits compared with the unmerged model's on a probe batch; a
difference over the tolerance (1e-4 in fp32) fails the merge and leaves the output directory untouched.

Only mergeable kinds (LoRA and DoRA, (IA)³: `Method.mergeable`) fold into linear weights; asking to merge another is an error that names the part
and gives its kind's reason (`Method.not_mergeable_reason`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModel, PreTrainedModel

from adapterx import store
from adapterx.core.errors import CompositionError
from adapterx.core.heads import HEADS, HeadSpec, TransformersTwin
from adapterx.core.io import atomic_directory, atomic_write_json, atomic_write_text
from adapterx.core.model import AdaptedModel
from adapterx.deploy.compose import ComposedModel, Mixed, Part, compose, kinds_summary, read_parts
from adapterx.deploy.head_usage import head_usage
from adapterx.deploy.plain import merge_into_base
from adapterx.methods import get_method, kinds

TOLERANCE = 1e-4
MERGE_INFO_FILE = "adapterx_merge.json"
PROBE_TEXTS = (
    "the happy dog eats the apple",
    "der hund isst nicht den apfel heute",
    "le chat dort",
    "el perro come la manzana y el gato duerme en la casa",
    "a",
    "the cat does not eat the big red apple today because it is not hungry",
)


@dataclass
class MergeReport:
    directory: Path
    merged: list[str]  # adapter names folded into the weights
    loader: str  # the transformers class that loads the checkpoint
    max_abs_diff: float  # merged (reloaded from disk) vs unmerged, on the probe batch
    compared: str  # what was compared: "logits" or "hidden states"
    tolerance: float
    parameters: int
    notes: list[str] = field(default_factory=list)


# ============================================================================================ checks
def check_mergeable(parts: Mapping[str, Part] | Sequence[Part]) -> None:
    """Raise CompositionError naming every part that cannot be folded into linear weights, why (as its kind
    says), and which can."""
    parts = list(parts.values()) if isinstance(parts, Mapping) else list(parts)
    blocked = [p for p in parts if not p.mergeable]
    if not blocked:
        return
    reasons = {p.kind: p.method.not_mergeable_reason for p in blocked}
    why = "; ".join(f"{kind}: {r}" if r else f"{kind} adapters are not a weight change" for kind, r in reasons.items())
    mergeable = " or ".join(
        f"{get_method(k).name} adapter (--adapter kind={k})" for k in kinds() if get_method(k).mergeable
    )
    raise CompositionError(
        f"cannot merge {', '.join(repr(p.name) for p in blocked)} into the base weights ({why}). What each "
        f"part can do: {kinds_summary(parts)}. Train a {mergeable} to get a mergeable one, or serve these "
        f"unmerged with `adapterx compose`"
    )


# ============================================================================================ save
def probe_batch(model: AdaptedModel, texts: Sequence[str] = PROBE_TEXTS) -> dict[str, torch.Tensor]:
    """A small padded batch of several languages and lengths (random ids for a backbone with no tokenizer)."""
    tok = model.backbone.tokenizer
    if tok is not None:
        batch = tok(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
        batch = {k: batch[k] for k in ("input_ids", "attention_mask")}
    else:
        gen = torch.Generator().manual_seed(0)
        vocab = model.backbone.model.config.vocab_size
        ids = torch.randint(5, vocab, (4, 16), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, 10:] = 0
        mask[3, 4:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
    return {k: v.to(model.device) for k, v in batch.items()}


def merge(
    composed: ComposedModel,
    directory: str | Path,
    *,
    tolerance: float = TOLERANCE,
    probe: Mapping[str, torch.Tensor] | None = None,
) -> MergeReport:
    """Fold the composition's active LoRA adapters into the base weights and write a plain transformers
    checkpoint (safetensors, config.json, tokenizer files, head) to `directory`, atomically, after checking on a
    probe batch that the reloaded checkpoint reproduces the unmerged model within `tolerance`."""
    if isinstance(composed.composition, Mixed):
        raise CompositionError(
            "a mixed composition picks adapters per row; one set of merged weights cannot do "
            "that. Merge each adapter on its own"
        )
    check_mergeable(composed.parts)
    model = composed.model
    names = list(composed.active)
    merged = merge_into_base(model, names)
    head = model.heads[composed.head] if composed.head else None
    probe = dict(probe) if probe is not None else probe_batch(model)
    directory = Path(directory)
    with atomic_directory(directory) as tmp, torch.no_grad():
        entry, why_not = _transformers_head(head, merged.config.model_type)
        if entry is not None:
            report = _save_with_head(composed, merged, head, entry, tmp, probe)
        else:
            report = _save_encoder(composed, merged, head, tmp, probe, why_not)
        report.directory, report.merged, report.tolerance = directory, names, tolerance
        if not report.max_abs_diff <= tolerance:  # also catches NaN
            raise CompositionError(
                f"merged and unmerged {report.compared} differ by {report.max_abs_diff:.3g} > {tolerance:g} on the "
                f"probe batch (weights in {model.backbone.model.dtype}; the 1e-4 bound is for float32); nothing "
                f"was written to {directory}"
            )
        if model.backbone.tokenizer is not None:
            model.backbone.tokenizer.save_pretrained(str(tmp))
        info = {
            "backbone": {"name": model.backbone.name, "fingerprint": model.backbone.fingerprint},
            "composition": composed.composition.to_dict(),
            "merged": names,
            "head": composed.head,
            "parts": [
                {
                    "name": p.name,
                    "path": str(p.path.resolve()),
                    "kind": p.kind,
                    "weights_digest": p.metadata.get("weights_digest"),
                }
                for p in composed.parts.values()
            ],
            "check": {
                "max_abs_diff": report.max_abs_diff,
                "tolerance": tolerance,
                "compared": report.compared,
                "dtype": str(model.backbone.model.dtype),
            },
            "loader": report.loader,
            "library_versions": store.library_versions(),
        }
        atomic_write_json(tmp / MERGE_INFO_FILE, info)
        atomic_write_text(tmp / "README.md", _readme(report, composed))
    return report


def _labels(part: Part, num_labels: int) -> list[str]:
    labels = part.labels
    return labels if len(labels) == num_labels else [f"LABEL_{i}" for i in range(num_labels)]


def _transformers_head(head, model_type: str) -> tuple[TransformersTwin | None, str]:
    """The head's transformers twin on this architecture (registered with the head kind), or None and why not."""
    if head is None:
        return None, ""
    entry = HEADS.get(head.spec.kind).transformers.get(model_type)
    if entry is None:
        return None, (
            f"{head.spec.kind} head has no transformers AutoModelFor… class with the same math here (on {model_type})"
        )
    why = entry.fits(head.spec)
    return (None, why) if why else (entry, "")


def _save_with_head(
    composed: ComposedModel, merged: PreTrainedModel, head, entry: TransformersTwin, tmp: Path, probe
) -> MergeReport:
    part = composed.parts[composed.head]
    labels = _labels(part, head.spec.num_labels)
    config = type(merged.config).from_dict(merged.config.to_dict())
    model_class = getattr(transformers, entry.model_class)
    config.architectures = [entry.model_class]
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.num_labels = len(labels)
    if entry.problem_type:
        config.problem_type = entry.problem_type
    config.classifier_dropout = head.spec.options.get("dropout")
    state = {f"{model_class.base_model_prefix}.{k}": v for k, v in merged.state_dict().items()}
    state.update(entry.state(head.state_dict()))
    full = model_class(config)
    full.load_state_dict(state, strict=True)
    full.to(merged.dtype).save_pretrained(str(tmp), safe_serialization=True)
    loader = getattr(transformers, entry.loader)
    reloaded = loader.from_pretrained(str(tmp)).to(composed.model.device).eval()
    got = reloaded(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits
    want = composed(probe["input_ids"], probe["attention_mask"])
    diff = (got.float() - want.float()).abs().max().item()
    params = sum(p.numel() for p in reloaded.parameters())
    return MergeReport(tmp, [], entry.loader, diff, "logits", TOLERANCE, params)


def _save_encoder(
    composed: ComposedModel, merged: PreTrainedModel, head, tmp: Path, probe, why_not: str
) -> MergeReport:
    merged.config.architectures = [type(merged).__name__]
    merged.save_pretrained(str(tmp), safe_serialization=True)
    reloaded = AutoModel.from_pretrained(str(tmp), add_pooling_layer=False).to(composed.model.device).eval()
    hidden = reloaded(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).last_hidden_state
    want_hidden = composed.encode(probe["input_ids"], probe["attention_mask"])
    notes = []
    if head is None:
        got, want, compared = hidden, want_hidden, "hidden states"
        notes.append("no head: the encoder alone was saved (AutoModel)")
    else:
        got = head(hidden, probe["attention_mask"])
        want = head(want_hidden, probe["attention_mask"])
        compared = "logits"
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors")
        )
        part = composed.parts[composed.head]
        atomic_write_json(
            tmp / "head.json", {"head": head.spec.to_json(), "labels": part.labels, "task": part.metadata.get("task")}
        )
        notes.append(f"{why_not}: the head is saved as head.safetensors + head.json beside the AutoModel encoder")
    diff = (got.float() - want.float()).abs().max().item()
    params = sum(p.numel() for p in reloaded.parameters())
    return MergeReport(tmp, [], "AutoModel", diff, compared, TOLERANCE, params, notes)


def _readme(report: MergeReport, composed: ComposedModel) -> str:
    plain, head_lines = True, []
    if composed.head is not None and report.loader == "AutoModel":  # the head saved beside the encoder
        plain, head_lines = head_usage(HeadSpec.from_json(composed.parts[composed.head].head))
    needs = (
        "adapterx and peft are not needed to load it"
        if plain
        else "the encoder loads without adapterx or peft; its task head needs adapterx (see below)"
    )
    lines = [
        f"# Merged checkpoint: {composed.backbone.name} + LoRA {', '.join(report.merged)}",
        "",
        f"Plain transformers weights (safetensors); {needs}.",
        "",
        "```python",
        f"from transformers import AutoTokenizer, {report.loader}",
        f"model = {report.loader}.from_pretrained(PATH)",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "```",
        "",
        f"Checked when written: max |merged - unmerged| {report.compared} = {report.max_abs_diff:.3g} "
        f"(tolerance {report.tolerance:g}) on a probe batch.",
        "",
    ]
    if report.notes:
        lines += [f"Note: {n}." for n in report.notes] + [""]
    lines += head_lines
    lines += ["Provenance (backbone fingerprint, adapters and their digests): adapterx_merge.json.", ""]
    return "\n".join(lines)


# ============================================================================================ from disk
def merge_adapters(
    backbone,
    adapters: Mapping[str, str | Path] | Sequence[tuple[str, str | Path]],
    directory: str | Path,
    *,
    head: str | None = None,
    tolerance: float = TOLERANCE,
) -> MergeReport:
    """Load saved adapters of a mergeable kind on `backbone` (all active, bottom first: LoRA deltas add, (IA)³
    vectors multiply), fold them into the base and write the checkpoint (see `merge`). Adapters of other kinds fail
    before anything is loaded."""
    parts = read_parts(adapters)
    check_mergeable(parts)
    composed = compose(backbone, {n: p.path for n, p in parts.items()}, "stack", head=head)
    return merge(composed, directory, tolerance=tolerance)


def report_json(report: MergeReport) -> str:
    data = asdict(report)
    data["directory"] = str(report.directory)
    return json.dumps(data, indent=2)
