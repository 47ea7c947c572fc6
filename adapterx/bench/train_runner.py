"""``adapterx bench --train``: the training cost of each adapter kind against full fine-tuning, as a results
document (results.json / results.csv / results.md, like the inference bench). The measuring happens in
`adapterx.bench.train_cost`, one fresh process per kind; what is measured is stated there and in the notes."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import time
from collections.abc import Callable
from pathlib import Path

from adapterx.bench import env
from adapterx.bench.config import BenchConfig
from adapterx.bench.forms import with_defaults
from adapterx.bench.report import targets_and_notes
from adapterx.bench.runner import SCHEMA_VERSION, check_devices, guarded, log, resolve_shape
from adapterx.bench.train_cost import jobs, run_train_jobs
from adapterx.core.errors import AdapterxError
from adapterx.core.io import atomic_write_json, atomic_write_text

TRAIN_OUTPUT_FILES = ("results.json", "results.csv", "results.md")
MEMORY_GOAL = 0.40  # the goal: adapter training peak memory < 40% of full fine-tuning's
TRAIN_CSV_COLUMNS = (
    "device",
    "dtype",
    "threads",
    "batch_size",
    "seq_len",
    "kind",
    "steps",
    "step_median_ms",
    "step_p10_ms",
    "step_p90_ms",
    "tokens_per_s",
    "peak_memory_mb",
    "memory_measure",
    "before_training_mb",
    "peak_vs_full",
    "step_time_vs_full",
    "trainable_params",
    "total_params",
    "checkpoint_bytes",
    "error",
)

NOTES = (
    "Each kind runs in a fresh Python process, so peaks do not mix. A step is forward, loss, backward, gradient "
    "clipping at 1.0 and an AdamW step (dropout on), on random tokens and labels, every row full length.",
    "Peak memory on CPU: the peak resident set size of the training phase (VmHWM, reset through "
    "/proc/self/clear_refs after the model is built; it includes the model's weights, the gradients, AdamW's two "
    "moments, activations kept for backward and the process's libraries); 'before training' is the resident size "
    "of the built model (weights and libraries), 'added by training' the difference. On CUDA: "
    "torch.cuda.max_memory_allocated over the steps (tensors only).",
    "Trainable parameters include the classification head; 'full' trains every backbone weight and the head. "
    "Checkpoint: the files adapterx saves for an adapter (weights, head, metadata); for 'full' the encoder and "
    "head weights as one safetensors file.",
    "Step times are medians over the timed steps after warm-up; p10-p90 is their spread; tokens/s = batch x seq "
    "/ median step time (virtual tokens of prompt/prefix not counted).",
)


def run_train_bench(cfg: BenchConfig, log: Callable[[str], None] = log) -> dict:
    """Measure training cost per kind over the grid of `cfg`, watching the machine's load."""
    cfg = with_defaults(cfg)
    return guarded(cfg, lambda: _run(cfg, log))


def _run(cfg: BenchConfig, log: Callable[[str], None]) -> dict:
    pairs = check_devices(cfg)
    backbone_name, shape_note = resolve_shape(cfg.shape)
    started = time.time()
    job_list = jobs(cfg, backbone_name, pairs)
    log(
        f"bench --train: {len(job_list)} runs ({', '.join(cfg.train_kinds)}), each in a fresh process, "
        f"{cfg.warmup} + {cfg.iterations} steps"
    )
    rows = run_train_jobs(job_list, log, cfg.progress)
    ok = [r for r in rows if r.get("error") is None]
    if not ok:
        raise AdapterxError(f"bench --train: every run failed; first error: {rows[0]['error']}")
    _compare_to_full(rows)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "adapterx bench --train",
        "scenario": "train",
        "command": cfg.command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": env.machine(),
        "versions": env.versions(),
        "git_commit": env.git_commit(),
        "settings": cfg.to_dict(),
        "backbone": dict(ok[0]["backbone"], requested=cfg.shape),
        "results": rows,
        "targets": _targets(rows),
        "notes": [n for n in (shape_note,) if n] + list(NOTES),
        "elapsed_s": round(time.time() - started, 1),
    }


def _point(r: dict) -> tuple:
    return (r["device"], r["dtype"], r["threads"], r["batch_size"], r["seq_len"])


def _compare_to_full(rows: list[dict]) -> None:
    full = {_point(r): r for r in rows if r["kind"] == "full" and r.get("error") is None}
    for r in rows:
        f = full.get(_point(r))
        if r.get("error") is None and f is not None:
            r["peak_vs_full"] = r["memory"]["peak_mb"] / f["memory"]["peak_mb"]
            r["step_time_vs_full"] = r["step_ms"]["median"] / f["step_ms"]["median"]


def _targets(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if r["kind"] != "full" and "peak_vs_full" in r:
            out.append(
                {
                    "target": f"{r['kind']}: training peak memory < {MEMORY_GOAL:.0%} of full fine-tuning's",
                    "where": f"{r['device']} {r['dtype']} threads={r['threads']} batch={r['batch_size']} "
                    f"seq={r['seq_len']}",
                    "value": f"{r['peak_vs_full']:.1%} ({r['memory']['peak_mb']:.0f} MB)",
                    "verdict": "met" if r["peak_vs_full"] < MEMORY_GOAL else "not met",
                }
            )
    return out


# ------------------------------------------------------------------------------------------------ outputs
def write_train_outputs(doc: dict, outdir: str | Path) -> list[Path]:
    outdir = Path(outdir)
    atomic_write_json(outdir / "results.json", doc)
    atomic_write_text(outdir / "results.csv", train_csv(doc))
    atomic_write_text(outdir / "results.md", train_markdown(doc))
    return [outdir / f for f in TRAIN_OUTPUT_FILES]


def train_csv(doc: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TRAIN_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in doc["results"]:
        row = {k: r.get(k) for k in ("device", "dtype", "threads", "batch_size", "seq_len", "kind", "error")}
        if r.get("error") is None:
            t, m = r["step_ms"], r["memory"]
            row.update(
                steps=r["steps"],
                step_median_ms=f"{t['median']:.2f}",
                step_p10_ms=f"{t['p10']:.2f}",
                step_p90_ms=f"{t['p90']:.2f}",
                tokens_per_s=f"{r['tokens_per_s']:.1f}",
                peak_memory_mb=m["peak_mb"],
                memory_measure=m["measure"],
                before_training_mb=m["before_training_mb"],
                peak_vs_full=f"{r['peak_vs_full']:.4f}" if "peak_vs_full" in r else "",
                step_time_vs_full=f"{r['step_time_vs_full']:.4f}" if "step_time_vs_full" in r else "",
                trainable_params=r["params"]["trainable"],
                total_params=r["params"]["total"],
                checkpoint_bytes=r["checkpoint_bytes"],
            )
        w.writerow(row)
    return buf.getvalue()


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def train_markdown(doc: dict) -> str:
    bb, m, v = doc["backbone"], doc["machine"], doc["versions"]
    s = doc["settings"]
    lines = [
        f"Training cost. Backbone **{bb['requested']}** → `{bb['name']}` ({bb['weights']} weights; "
        f"{bb['num_hidden_layers']} layers, hidden {bb['hidden_size']}, attention `{bb['attn_implementation']}`). "
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs"
        + (f", GPU {', '.join(m['cuda_devices'])}" if m.get("cuda_devices") else "")
        + f"; torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, adapters {v['adapters']}; "
        f"commit `{doc['git_commit'][:12]}`; {s['iterations']} timed steps after {s['warmup']} warm-up.",
        "",
    ]
    if doc.get("command"):
        lines += ["Generated by:", "", "```", doc["command"], "```", ""]
    points: dict[tuple, list[dict]] = {}
    for r in doc["results"]:
        points.setdefault(_point(r), []).append(r)
    for (device, dtype, threads, bs, seq), rows in points.items():
        lines += [
            f"**{device}, {dtype}, {threads} threads — batch {bs}, seq {seq}**",
            "",
            "| kind | trainable params | step ms median (p10–p90) | step time vs full | tokens/s | "
            "peak memory MB | peak vs full | before training MB | added by training MB | checkpoint |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            if r.get("error"):
                lines.append(f"| {r['kind']} | — | {r['error']} | | | | | | | |")
                continue
            t, mem, p = r["step_ms"], r["memory"], r["params"]
            vs = lambda key: f"{r[key]:.2f}" if key in r else ""  # noqa: E731, B023 - used at once
            lines.append(
                f"| {r['kind']} | {_count(p['trainable'])} ({p['trainable'] / p['total']:.2%}) | "
                f"{t['median']:.0f} ({t['p10']:.0f}–{t['p90']:.0f}) | {vs('step_time_vs_full')} | "
                f"{r['tokens_per_s']:.0f} | {mem['peak_mb']:.0f} | {vs('peak_vs_full')} | "
                f"{mem['before_training_mb']:.0f} | {mem['peak_mb'] - mem['before_training_mb']:.0f} | "
                f"{_size(r['checkpoint_bytes'])} |"
            )
        lines.append("")
    lines += targets_and_notes(doc)
    return "\n".join(lines).rstrip() + "\n"
