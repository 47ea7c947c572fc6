"""From evaluation records (one per target, run, seed, form and split) to the study's results: means over seeds,
the benefit over the baseline and each setup's difference to its controls, paired by seed and test example with
intervals that count both (adapterx.study.intervals), confusion matrices with collapses flagged, the recipe's
expectations checked, the latency overhead of each deployment form, and the XTREME aggregation
(adapterx.study.aggregate; controls take no part in it: they are not candidates).

`summarize_scores` (unpaired, seeds only) serves `adapterx evaluate`, whose adapters need not share seeds."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence

from adapterx.core.errors import AdapterxError
from adapterx.deploy.forms import DEPLOYMENT_FORMS
from adapterx.study.aggregate import aggregate
from adapterx.study.design import CONTROL_KEYWORDS, SHUFFLED, comparison_row
from adapterx.study.intervals import SEEDS_ONLY, TWO_WAY
from adapterx.study.pairing import (
    RunSet,
    confusions,
    describe,
    difference,
    runsets,
    verdict,
)
from adapterx.study.state import (
    BASELINE,
    NO_INTERMEDIATE,
    PHASE_FILE,
    RESULTS_SCHEMA,
    RunState,
    deployment_bench_form,
)
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
    diffs = sorted(
        statistics.fmean(rng.choices(a, k=len(a))) - statistics.fmean(rng.choices(b, k=len(b)))
        for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return [diffs[int(tail * (resamples - 1))], diffs[int((1 - tail) * (resamples - 1))]]


def _stats(values: list[float], resamples: int, confidence: float) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "ci": bootstrap_ci(values, resamples, confidence),
        "n": len(values),
        "values": values,
    }


def summarize_scores(
    runs: list[dict], baseline: list[dict] | None, metric: str, resamples: int, confidence: float
) -> dict:
    """Per-language and average statistics of several runs (seeds) of one setup, each run a {language: scores}
    mapping; with `baseline` runs also the benefit (difference of means) and its bootstrap interval."""
    languages = list(runs[0])

    def per_lang(group, lang):
        return [r[lang][metric] for r in group]

    def avg(group):
        return [statistics.fmean(r[lang][metric] for lang in languages) for r in group]

    out = {
        "per_language": {lang: _stats(per_lang(runs, lang), resamples, confidence) for lang in languages},
        "average": _stats(avg(runs), resamples, confidence),
    }
    if baseline:
        out["benefit"] = {
            lang: {
                "mean": statistics.fmean(per_lang(runs, lang)) - statistics.fmean(per_lang(baseline, lang)),
                "ci": bootstrap_diff_ci(per_lang(runs, lang), per_lang(baseline, lang), resamples, confidence),
            }
            for lang in languages
        }
        out["average_benefit"] = {
            "mean": statistics.fmean(avg(runs)) - statistics.fmean(avg(baseline)),
            "ci": bootstrap_diff_ci(avg(runs), avg(baseline), resamples, confidence),
        }
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


def target_tables(state: RunState, records: list[dict], bench: dict | None) -> tuple[dict, list[dict]]:
    """Per target (records of one split): its rows and, from them, the recipe's expectations checked."""
    targets, expectations = {}, []
    for target_name in state.recipe.target.tasks:
        mine = runsets([r for r in records if r["target"] == target_name], state.out)
        if mine:
            targets[target_name] = _target(state, target_name, mine, bench)
            expectations += _expectations(state, target_name, mine, targets[target_name])
    return targets, expectations


def assemble(state: RunState, records: list[dict], bench: dict | None, seconds: float) -> dict:
    """The results document: tables on the reported split (test when evaluated) and on dev, the expectations
    (on the reported split), the XTREME aggregation, the bench, the phases."""
    recipe = state.recipe
    splits = [s for s in recipe.evaluate.splits if any(r.get("split") == s for r in records)]
    report_split = TEST if TEST in splits else (splits[-1] if splits else TEST)
    targets, expectations = target_tables(state, [r for r in records if r.get("split") == report_split], bench)
    dev = target_tables(state, [r for r in records if r.get("split") == DEV], None)[0] if report_split != DEV else {}
    b = state.backbone
    return {
        "schema_version": RESULTS_SCHEMA,
        "recipe": recipe.to_json(),
        "backbone": {
            "name": b.name,
            "pretrained": b.pretrained,
            "description": b.description,
            "fingerprint": b.fingerprint,
        },
        "split": report_split,
        "splits": splits,
        "seeds": recipe.seeds,
        "skipped_strategies": recipe.skipped_strategies(),
        "skipped_controls": recipe.skipped_controls(),
        "confidence": recipe.evaluate.confidence,
        "bootstrap": recipe.evaluate.bootstrap,
        "targets": targets,
        "dev_targets": dev,
        "expectations": expectations,
        "intermediates": _intermediates(state),
        "xtreme": aggregate([r for r in records if r.get("role") != "control"], recipe.target.tasks, b.name),
        "bench": _bench_summary(bench),
        "phases": [{"name": p.name, "reused": p.reused, "seconds": round(p.seconds, 2)} for p in state.phases],
        "seconds": round(seconds, 2),
        "device": _device(),
    }


def _target(state: RunState, target_name: str, runs: dict[tuple[str, str], RunSet], bench: dict | None) -> dict:
    recipe, ev, spec = state.recipe, state.recipe.evaluate, state.recipe.adapter_spec
    task = get_task(target_name)
    first = next(iter(runs.values()))
    languages = list(first.scores[0])
    metric = _metric(first.scores[0])
    baseline_label = BASELINE if task.trainable else NO_INTERMEDIATE
    table = []
    for (label, form), run in runs.items():
        base = runs.get((baseline_label, form)) or runs.get((baseline_label, "unmerged"))
        entry = {
            "label": label,
            **{k: run.info[k] for k in ("role", "control", "intermediate", "strategy")},
            "form": form,
            "seeds": run.seeds,
            **describe(run, languages, metric, ev.bootstrap, ev.confidence),
        }
        if (
            label != baseline_label
            and base is not None
            and (d := difference(run, base, languages, metric, ev.bootstrap, ev.confidence))
        ):
            entry["benefit"], entry["average_benefit"] = d["per_language"], d["average"]
        if form == "unmerged" and run.info["role"] == "setup":
            entry["comparisons"] = _comparisons(state, task, run, runs, languages, metric)
        entry["confusion"], entry["collapsed"] = confusions(run, languages, list(task.labels))
        bench_form = deployment_bench_form(spec, run.info["strategy"], form)
        modules = DEPLOYMENT_FORMS.get(form).modules(_modules(run.info["strategy"], recipe))
        entry.update(
            {"modules_at_inference": modules, "bench_form": bench_form, "overhead": _overheads(bench, bench_form)}
        )
        table.append(entry)
    order = {"baseline": 0, "setup": 1, "control": 2}
    table.sort(key=lambda e: (order.get(e["role"], 3), e["label"], e["form"]))
    per_example = all(run.per_example for run in runs.values())
    return {
        "metric": metric,
        "languages": languages,
        "labels": list(task.labels),
        "baseline": baseline_label,
        "n_seeds": len(recipe.seeds),
        "n_examples": _n_examples(first, languages),
        "interval_method": TWO_WAY if per_example else SEEDS_ONLY,
        "rows": table,
    }


def _n_examples(run: RunSet, languages: list[str]) -> dict[str, int] | None:
    if not run.per_example:
        return None
    return {lang: int(len(run.predictions[0][lang]["gold"])) for lang in languages}


def _control_run(state: RunState, task, run: RunSet, runs: dict, keyword: str) -> RunSet | None:
    """The unmerged run of `keyword`'s control for setup `run` (see adapterx.study.plan.comparison_row)."""
    label, _ = comparison_row(state.recipe, task, run.label, keyword)
    if label == "step-matched":
        return next(
            (
                r
                for (_, form), r in runs.items()
                if form == "unmerged"
                and r.info["control"] == "step-matched"
                and run.info["intermediate"] in (r.info["step_phases"] or [])
            ),
            None,
        )
    return runs.get((label, "unmerged")) if label else None


def _comparisons(state: RunState, task, run: RunSet, runs: dict, languages: list[str], metric: str) -> dict:
    """The setup against each of its controls: setup minus control, paired by seed and example."""
    ev, out = state.recipe.evaluate, {}
    for keyword in ("shuffled", "step-matched", "capacity-matched", "pooled"):
        other = _control_run(state, task, run, runs, keyword)
        if other is not None and (d := difference(run, other, languages, metric, ev.bootstrap, ev.confidence)):
            out[keyword] = {"vs": other.label, "average": d["average"], "per_language": d["per_language"]}
    return out


def _expectations(state: RunState, target_name: str, runs: dict, target: dict) -> list[dict]:
    """Each expectation of the recipe for this target, with the observed difference and whether it held."""
    recipe, ev, task = state.recipe, state.recipe.evaluate, get_task(target_name)
    out = []
    for e in recipe.expect:
        if (e.target or target_name) != target_name:
            continue
        setup = runs.get((e.setup, "unmerged"))
        other = None
        if setup is not None:
            other = (
                _control_run(state, task, setup, runs, e.vs)
                if e.vs in CONTROL_KEYWORDS and e.vs != "baseline"
                else runs.get((target["baseline"] if e.vs == "baseline" else e.vs, "unmerged"))
            )
        diff = None
        if setup is not None and other is not None:
            d = difference(setup, other, target["languages"], target["metric"], ev.bootstrap, ev.confidence)
            diff = d and (d["per_language"][e.language] if e.language else d["average"])
        out.append(
            {
                "target": target_name,
                "setup": e.setup,
                "vs": e.vs,
                "vs_row": other.label if other else None,
                "direction": e.direction,
                "language": e.language,
                "why": e.why,
                "difference": diff,
                "verdict": verdict(diff, e.direction),
            }
        )
    return out


def _intermediates(state: RunState) -> dict:
    """How well each intermediate adapter learned its own task: English dev scores per seed (from the phase
    records), beside chance for classification tasks -- a task the adapter did not learn cannot transfer."""
    out: dict[str, dict] = {}
    for (name, seed), adapter_dir in sorted(state.trained.items(), key=lambda item: (item[0][0], item[0][1])):
        phase = json.loads((adapter_dir.parent / PHASE_FILE).read_text())
        entry = out.setdefault(name, {"seeds": [], "validation": []})
        entry["seeds"].append(seed)
        entry["validation"].append(phase.get("validation", {}))
        tasks = phase.get("inputs", {}).get("tasks", [])
        if len(tasks) == 1 and (task := _base_task(tasks[0])) is not None and task.num_labels:
            entry["chance"] = round(100 / task.num_labels, 1)
    return out


def _base_task(name: str):
    try:
        return get_task(name.removesuffix(SHUFFLED))
    except AdapterxError:
        return None


def _modules(strategy: str, recipe) -> int:
    """Adapter modules active at inference (a retrieval target's 'direct' use of one adapter counts one)."""
    return 1 if strategy == "direct" else modules_at_inference(strategy, len(recipe.intermediate.tasks))


def _bench_summary(bench: dict | None) -> dict | None:
    if not bench:
        return None
    return {
        "backbone": bench.get("backbone"),
        "settings": bench.get("settings"),
        "notes": bench.get("notes", []),
        "machine": bench.get("machine"),
        "results": [
            {
                k: r.get(k)
                for k in (
                    "form",
                    "device",
                    "dtype",
                    "threads",
                    "batch_size",
                    "seq_len",
                    "time_ms",
                    "ratio_to_base",
                    "throughput",
                    "error",
                )
            }
            for r in bench["results"]
        ],
    }


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
