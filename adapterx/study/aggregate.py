"""XTREME's aggregation of a study's scores, and the choices the paper's tables rest on, made on dev.

- Task score as XTREME's ``evaluate.py`` computes ``avg_metric``: the mean over languages of F1 (PAN-X, UDPOS,
  BUCC) or accuracy (XNLI, PAWS-X, Tatoeba); for the QA tasks (XQuAD, MLQA, TyDiQA) the mean of the language
  averages of exact match and F1.
- The XTREME score: the mean of the nine task scores (given only when all nine are there, as ``evaluate.py``);
  the four category scores likewise (classification, structured prediction, question answering, retrieval).
- A *setup* is one way of building every target: the baseline (target-only adapters; the bare backbone on the
  retrieval targets) or an intermediate adapter with a transfer strategy (retrieval targets use the
  intermediate adapter directly, whatever the strategy).
- Per setup, its average gain over the baseline across targets, ranked (the paper's per-intermediate ranking).
- Per target, the best intermediate setup chosen on dev and scored on test (the paper's "best model per target").
  A target without a held-out dev split (Tatoeba; TyDiQA-GoldP, whose dev set is XTREME's test set) takes the
  setup with the best mean dev gain over the targets that have one, so no choice ever looks at test.

Scores are means over seeds; the deployment form is the unmerged one (merging changes no prediction beyond float
error). The paper's per-target numbers are set beside the dev-selected ones when the backbone is XLM-R Large.
"""

from __future__ import annotations

import statistics

from adapterx.tasks import get_task
from adapterx.tasks.splits import DEV, TEST, no_dev_reason

GROUPS = {  # evaluate.py's GROUP2TASK
    "classification": ("pawsx", "xnli"),
    "structured prediction": ("udpos", "panx"),
    "question answering": ("xquad", "mlqa", "tydiqa"),
    "retrieval": ("bucc2018", "tatoeba"),
}
XTREME_TASKS = tuple(t for group in GROUPS.values() for t in group)
BASELINE_SETUP = "baseline"
# Phang et al. 2020 (arXiv 2005.13013), XLM-R Large without and with its best intermediate task per target, as
# reproduced in the mT5 paper (Xue et al. 2021, Table 2): (metric, XLM-R Large, best intermediate task)
PAPER_BACKBONE = "xlm-roberta-large"
PAPER = {
    "xnli": ("accuracy", 79.2, 80.4),
    "pawsx": ("accuracy", 86.4, 87.7),
    "panx": ("f1", 65.4, 64.7),
    "xquad": ("f1", 76.6, 77.2),
    "mlqa": ("f1", 71.6, 72.3),
    "tydiqa": ("f1", 65.1, 76.0),
}
PAPER_SOURCE = "Phang et al. 2020, as reproduced in the mT5 paper (Xue et al. 2021), Table 2"


def task_score(per_language: dict[str, dict[str, float]]) -> float:
    """XTREME's avg_metric of one task from {language: scores}."""

    def avg(metric: str) -> float:
        return statistics.fmean(scores[metric] for scores in per_language.values())

    first = next(iter(per_language.values()))
    if "f1" in first and "exact_match" in first:
        return (avg("exact_match") + avg("f1")) / 2
    for metric in ("f1", "accuracy"):
        if metric in first:
            return avg(metric)
    return avg(next(iter(first)))


def primary_average(per_language: dict[str, dict[str, float]]) -> float:
    """The mean over languages of the first (primary) metric: what the paper's per-target table reports."""
    return statistics.fmean(next(iter(scores.values())) for scores in per_language.values())


def _setup_keys(records: list[dict]) -> list[tuple]:
    trained = {(r["intermediate"], r["strategy"]) for r in records if r["strategy"] != "direct"}
    keys = trained or {(r["intermediate"], "direct") for r in records}
    return sorted(keys, key=lambda k: (k[0] is not None, str(k[0]), str(k[1])))


def _setup_id(key: tuple) -> str:
    return BASELINE_SETUP if key[0] is None else f"{key[0]}+{key[1]}" if key[1] != "direct" else key[0]


def _belongs(record: dict, key: tuple) -> bool:
    if record["strategy"] == "direct":  # retrieval: the intermediate adapter itself, any strategy
        return record["intermediate"] == key[0]
    return (record["intermediate"], record["strategy"]) == key


def task_scores(records: list[dict], split: str, keys: list[tuple]) -> dict[str, dict[str, dict]]:
    """{target: {setup: {score, primary, languages, seeds}}} on `split` (unmerged form, mean over seeds)."""
    out: dict[str, dict[str, dict]] = {}
    mine = [r for r in records if r.get("split") == split and r["form"] == "unmerged"]
    for key in keys:
        for target in dict.fromkeys(r["target"] for r in mine):
            runs = [r["scores"] for r in mine if r["target"] == target and _belongs(r, key)]
            if runs:
                out.setdefault(target, {})[_setup_id(key)] = {
                    "score": statistics.fmean(task_score(s) for s in runs),
                    "primary": statistics.fmean(primary_average(s) for s in runs),
                    "languages": sorted(runs[0]),
                    "seeds": len(runs),
                }
    return out


def overall(tasks: dict[str, dict[str, dict]], setup: str) -> dict:
    """The XTREME score and category scores of one setup (None where a task is missing), and the plain mean."""
    scores = {t: per[setup]["score"] for t, per in tasks.items() if setup in per}

    def mean_of(names):
        return statistics.fmean(scores[n] for n in names) if names and all(n in scores for n in names) else None

    return {
        "xtreme": mean_of(XTREME_TASKS),
        "categories": {g: mean_of(ts) for g, ts in GROUPS.items()},
        "mean": statistics.fmean(scores.values()) if scores else None,
        "tasks": len(scores),
    }


def ranking(tasks: dict[str, dict[str, dict]], setups: list[str]) -> list[dict]:
    """Each non-baseline setup's mean gain over the baseline across the targets both have, best first."""
    rows = []
    for setup in setups:
        if setup == BASELINE_SETUP:
            continue
        gains = {
            t: per[setup]["score"] - per[BASELINE_SETUP]["score"]
            for t, per in tasks.items()
            if setup in per and BASELINE_SETUP in per
        }
        if gains:
            rows.append({"setup": setup, "mean_gain": statistics.fmean(gains.values()), "gains": gains})
    return sorted(rows, key=lambda r: -r["mean_gain"])


def best_per_target(dev: dict, test: dict, targets: list[str], setups: list[str]) -> dict[str, dict]:
    """Per target, the intermediate setup with the best dev score and its test scores (see the module doc)."""
    candidates = [s for s in setups if s != BASELINE_SETUP]
    fallback = next((r["setup"] for r in ranking(dev, setups)), None)
    out = {}
    for target in targets:
        on_dev = {s: dev[target][s]["score"] for s in candidates if s in dev.get(target, {})}
        task = get_task(target)
        if on_dev:
            chosen = max(on_dev, key=lambda s: on_dev[s])
            rule = f"best dev score ({', '.join(dev[target][chosen]['languages'])})"
        else:
            chosen = fallback
            why = no_dev_reason(task) or f"{target} was not evaluated on dev"
            rule = f"no held-out dev ({why}): the setup with the best mean dev gain over the other targets"
        per = test.get(target, {})
        if chosen is None or chosen not in per:
            continue
        base = per.get(BASELINE_SETUP)
        out[target] = {
            "setup": chosen,
            "rule": rule,
            "dev_score": on_dev.get(chosen),
            "test_score": per[chosen]["score"],
            "test_primary": per[chosen]["primary"],
            "baseline_score": base["score"] if base else None,
            "baseline_primary": base["primary"] if base else None,
            "metric": task.metric,
        }
    return out


def aggregate(records: list[dict], targets: list[str], backbone_name: str) -> dict:
    """Everything above, for every evaluated split; the choices on dev, their scores on test."""
    keys = _setup_keys(records)
    setups = [_setup_id(k) for k in keys]
    splits = {}
    for split in (DEV, TEST):
        tasks = task_scores(records, split, keys)
        if tasks:
            splits[split] = {
                "tasks": tasks,
                "overall": {s: overall(tasks, s) for s in setups},
                "ranking": ranking(tasks, setups),
            }
    best = (
        best_per_target(splits.get(DEV, {}).get("tasks", {}), splits.get(TEST, {}).get("tasks", {}), targets, setups)
        if DEV in splits and TEST in splits
        else {}
    )
    composite = {t: b["test_score"] for t, b in best.items()}
    base = splits.get(TEST, {}).get("tasks", {})
    paper = PAPER_BACKBONE in backbone_name.lower()
    return {
        "setups": setups,
        "splits": splits,
        "best_per_target": best,
        "best_overall": {
            "xtreme": statistics.fmean(composite.values()) if set(XTREME_TASKS) <= set(composite) else None,
            "mean": statistics.fmean(composite.values()) if composite else None,
            "baseline_mean": statistics.fmean(base[t][BASELINE_SETUP]["score"] for t in composite)
            if composite and all(BASELINE_SETUP in base.get(t, {}) for t in composite)
            else None,
        },
        "paper": {"source": PAPER_SOURCE, "targets": PAPER} if paper else None,
    }
