"""From evaluation records (one per target, run, seed, form and split) to the study's results: means over seeds
with a bootstrap confidence interval, the benefit over the baseline, the latency overhead of each deployment
form, and the XTREME aggregation (adapterx.study.aggregate)."""

from __future__ import annotations

import random
import statistics
from typing import Sequence

from adapterx.deploy.forms import DEPLOYMENT_FORMS
from adapterx.study.aggregate import aggregate
from adapterx.study.state import BASELINE, NO_INTERMEDIATE, RESULTS_SCHEMA, RunState, deployment_bench_form
from adapterx.tasks import get_task
from adapterx.tasks.splits import DEV, TEST
from adapterx.training.strategies import modules_at_inference


def bootstrap_ci(values: Sequence[float], resamples: int, confidence: float, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of `values` (seeds are the resampled unit)."""
    if len(values) < 2:
        return [values[0], values[0]]
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return [means[int(tail * (resamples - 1))], means[int((1 - tail) * (resamples - 1))]]


def bootstrap_diff_ci(a: Sequence[float], b: Sequence[float], resamples: int, confidence: float) -> list[float]:
    """Interval of mean(a) - mean(b), resampling each side independently."""
    if len(a) < 2 and len(b) < 2:
        d = statistics.fmean(a) - statistics.fmean(b)
        return [d, d]
    rng = random.Random(1)
    diffs = sorted(statistics.fmean(rng.choices(a, k=len(a))) - statistics.fmean(rng.choices(b, k=len(b)))
                   for _ in range(resamples))
    tail = (1 - confidence) / 2
    return [diffs[int(tail * (resamples - 1))], diffs[int((1 - tail) * (resamples - 1))]]


def _stats(values: list[float], resamples: int, confidence: float) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "ci": bootstrap_ci(values, resamples, confidence), "n": len(values), "values": values}


def summarize_scores(runs: list[dict], baseline: list[dict] | None, metric: str, resamples: int,
                     confidence: float) -> dict:
    """Per-language and average statistics of several runs (seeds) of one setup, each run a {language: scores}
    mapping; with `baseline` runs also the benefit (difference of means) and its bootstrap interval."""
    languages = list(runs[0])

    def per_lang(group, lang):
        return [r[lang][metric] for r in group]

    def avg(group):
        return [statistics.fmean(r[lang][metric] for lang in languages) for r in group]

    out = {"per_language": {lang: _stats(per_lang(runs, lang), resamples, confidence) for lang in languages},
           "average": _stats(avg(runs), resamples, confidence)}
    if baseline:
        out["benefit"] = {lang: {"mean": statistics.fmean(per_lang(runs, lang)) - statistics.fmean(per_lang(baseline, lang)),
                                 "ci": bootstrap_diff_ci(per_lang(runs, lang), per_lang(baseline, lang), resamples,
                                                         confidence)} for lang in languages}
        out["average_benefit"] = {"mean": statistics.fmean(avg(runs)) - statistics.fmean(avg(baseline)),
                                  "ci": bootstrap_diff_ci(avg(runs), avg(baseline), resamples, confidence)}
    return out


def _metric(scores: dict) -> str:
    return next(iter(next(iter(scores.values()))))


def _overheads(bench: dict | None, bench_form: str | None) -> dict:
    """{batch size: ratio_to_base} at the bench's first sequence length, for `bench_form`."""
    if not bench or not bench_form:
        return {}
    rows = [r for r in bench["results"] if r.get("form") == bench_form and not r.get("error")]
    if not rows:
        return {}
    seq = min(r["seq_len"] for r in rows)
    return {str(r["batch_size"]): r["ratio_to_base"] for r in rows if r["seq_len"] == seq}


def target_tables(records: list[dict], recipe, bench: dict | None) -> dict:
    """Per target (records of one split): one row per (run, form) with statistics over seeds and the benefit."""
    ev, spec = recipe.evaluate, recipe.adapter_spec
    targets = {}
    for target_name in recipe.target.tasks:
        mine = [r for r in records if r["target"] == target_name]
        if not mine:
            continue
        metric = _metric(mine[0]["scores"])
        languages = list(mine[0]["scores"])
        groups: dict[tuple, list[dict]] = {}
        for r in mine:
            groups.setdefault((r["label"], r["form"]), []).append(r)
        baseline_label = BASELINE if get_task(target_name).trainable else NO_INTERMEDIATE
        base_scores = [r["scores"] for r in groups.get((baseline_label, "unmerged"), [])]
        table = []
        for (label, form), rows in groups.items():
            first = rows[0]
            bench_form = deployment_bench_form(spec, first["strategy"], form)
            table.append({
                "label": label, "intermediate": first["intermediate"], "strategy": first["strategy"], "form": form,
                "seeds": [r["seed"] for r in rows],
                **summarize_scores([r["scores"] for r in rows], base_scores if label != baseline_label else None,
                                   metric, ev.bootstrap, ev.confidence),
                "modules_at_inference": DEPLOYMENT_FORMS.get(form).modules(_modules(first["strategy"], recipe)),
                "bench_form": bench_form,
                "overhead": _overheads(bench, bench_form),
            })
        table.sort(key=lambda e: (e["label"] != baseline_label, e["label"], e["form"]))
        targets[target_name] = {"metric": metric, "languages": languages, "baseline": baseline_label, "rows": table}
    return targets


def assemble(state: RunState, records: list[dict], bench: dict | None, seconds: float) -> dict:
    """The results document: tables on the reported split (test when evaluated) and on dev, the XTREME
    aggregation (adapterx.study.aggregate), the bench, the phases."""
    recipe = state.recipe
    splits = [s for s in recipe.evaluate.splits if any(r.get("split") == s for r in records)]
    report_split = TEST if TEST in splits else (splits[-1] if splits else TEST)
    b = state.backbone
    return {
        "schema_version": RESULTS_SCHEMA,
        "recipe": recipe.to_json(),
        "backbone": {"name": b.name, "pretrained": b.pretrained, "description": b.description,
                     "fingerprint": b.fingerprint},
        "split": report_split,
        "splits": splits,
        "seeds": recipe.seeds,
        "skipped_strategies": recipe.skipped_strategies(),
        "confidence": recipe.evaluate.confidence,
        "targets": target_tables([r for r in records if r.get("split") == report_split], recipe, bench),
        "dev_targets": (target_tables([r for r in records if r.get("split") == DEV], recipe, None)
                        if report_split != DEV else {}),
        "xtreme": aggregate(records, recipe.target.tasks, b.name),
        "bench": _bench_summary(bench),
        "phases": [{"name": p.name, "reused": p.reused, "seconds": round(p.seconds, 2)} for p in state.phases],
        "seconds": round(seconds, 2),
        "device": _device(),
    }


def _modules(strategy: str, recipe) -> int:
    """Adapter modules active at inference (a retrieval target's 'direct' use of one adapter counts one)."""
    return 1 if strategy == "direct" else modules_at_inference(strategy, len(recipe.intermediate.tasks))


def _bench_summary(bench: dict | None) -> dict | None:
    if not bench:
        return None
    return {"backbone": bench.get("backbone"), "settings": bench.get("settings"), "notes": bench.get("notes", []),
            "machine": bench.get("machine"),
            "results": [{k: r.get(k) for k in ("form", "device", "dtype", "threads", "batch_size", "seq_len",
                                                  "time_ms", "ratio_to_base", "throughput", "error")}
                        for r in bench["results"]]}


def _device() -> str:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
