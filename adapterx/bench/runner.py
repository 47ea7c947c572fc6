"""Run the benchmark grid: build the forms once per (device, dtype), time them interleaved at every point."""

from __future__ import annotations

import copy
import datetime as _dt
import itertools
import logging
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from adapterx.bench import env
from adapterx.bench.config import BenchConfig
from adapterx.bench.forms import (
    Batch,
    Form,
    FormContext,
    build_form,
    check_form_names,
    count_parameters,
    make_batch,
    virtual_tokens,
    with_defaults,
)
from adapterx.bench.hygiene import LoadMonitor
from adapterx.bench.instructions import count_instructions
from adapterx.bench.rounds import measure_rounds, point_deadline, target_ci_summary, widest_interval
from adapterx.bench.targets import evaluate_targets
from adapterx.bench.timing import Clock, paired_ratio, summarize
from adapterx.core.backbone import PRETRAINED_SOURCES, REAL_SHAPES, load_backbone, usable_positions
from adapterx.core.e5format import package_file
from adapterx.core.errors import AdapterxError
from adapterx.core.log import show_progress

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def log(msg: str) -> None:
    logger.info(msg)


SHAPE_ALIASES = {"e5-small": "multilingual-e5-small"}


def resolve_shape(shape: str) -> tuple[str, str]:
    """Map --shape to a backbone name: pretrained weights when they are at hand (the local Hugging Face cache,
    or a built-in backbone's package), else the same architecture with random weights. Returns (backbone
    name, note)."""
    if shape.startswith(("builtin:", "random:")) or shape.startswith((".", "/", "~")):
        return shape, ""
    arch = shape.removeprefix("FacebookAI/").removeprefix("intfloat/")
    arch = SHAPE_ALIASES.get(arch, arch)
    if arch not in REAL_SHAPES:
        raise AdapterxError(
            f"bench: unknown --shape {shape!r}; use {', '.join(REAL_SHAPES)}, "
            f"random:<arch>, builtin:tiny-xlmr or a local checkpoint directory"
        )
    source = PRETRAINED_SOURCES[arch]
    if source.startswith("builtin:"):
        try:
            package_file()
        except AdapterxError as exc:
            return f"random:{arch}", f"{source} not at hand ({exc}): real shape, RANDOM weights"
        return source, f"pretrained weights from {source}"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "model.safetensors")
    except Exception:  # noqa: BLE001 - any cache problem means "not at hand"
        cached = None
    if isinstance(cached, str):
        return source, "pretrained weights from the local Hugging Face cache"
    return f"random:{arch}", f"{source} weights not at hand: real shape, RANDOM weights"


def check_devices(cfg: BenchConfig) -> list[tuple[str, str]]:
    """The (device, dtype) pairs to run; a clear error for what this machine cannot do."""
    if "cuda" in cfg.devices and not torch.cuda.is_available():
        raise AdapterxError(
            f"bench: --devices cuda requested, but no CUDA GPU is usable here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). "
            f"Use --devices cpu."
        )
    pairs = [(d, t) for d in cfg.devices for t in cfg.dtypes if not (d == "cpu" and t == "fp16")]
    if not pairs:
        raise AdapterxError("bench: fp16 runs on CUDA only; on CPU use --dtypes fp32 or bf16")
    return pairs


def _compile_mode(cfg: BenchConfig, device: str) -> str:
    if cfg.compile_mode != "auto":
        return cfg.compile_mode
    return "reduce-overhead" if device == "cuda" else "default"


def _callables(
    forms: dict[str, Form], mode: str, cfg: BenchConfig, device: str, batch: Batch, errors: dict[str, str]
) -> dict[str, Callable[[], object]]:
    out = {}
    for name, f in forms.items():
        if mode == "eager":
            out[name] = lambda f=f: f(batch)
            continue
        compiled = torch.compile(f.module, mode=_compile_mode(cfg, device), dynamic=False)
        fn = lambda f=f, m=compiled: f.run(m, batch)  # noqa: E731
        try:
            with torch.inference_mode():
                fn()
        except Exception as exc:  # noqa: BLE001 - a form that does not compile is reported, not fatal
            if name == "base":
                raise AdapterxError(f"bench: torch.compile failed on the base model: {exc}") from exc
            errors[name] = f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        out[name] = fn
    return out


def _cuda_peak_mb(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def estimate(cfg: BenchConfig, probe_s: float, probe_tokens: int, n_forms: int) -> tuple[int, float]:
    """(forward passes, estimated seconds) of the whole grid, scaling one probed base pass by token count."""
    rounds = cfg.warmup + cfg.iterations
    per_point = len(cfg.devices) * len(cfg.dtypes) * len(cfg.threads) * len(cfg.modes)
    tokens = sum(b * s for b in cfg.batch_sizes for s in cfg.seq_lens)
    passes = cfg.grid_size() * n_forms * rounds
    return passes, probe_s * tokens / probe_tokens * per_point * n_forms * rounds


def own_threads(cfg: BenchConfig) -> int:
    """Compute threads the bench itself keeps busy (for the load monitor): its CPU threads, 1 for CUDA only."""
    if "cpu" not in cfg.devices:
        return 1
    return max(t or torch.get_num_threads() for t in cfg.threads)


def guarded(cfg: BenchConfig, measure: Callable[[], dict]) -> dict:
    """Run `measure()` (which returns a results document) while watching the machine's load; the samples, and a
    warning when the machine was busy, go into the document (machine.load, warnings, notes)."""
    with LoadMonitor(own_threads(cfg)) as monitor:
        doc = measure()
    doc["machine"]["load"] = monitor.record()
    doc["machine"]["load_average_1m_end"] = env.machine()["load_average_1m"]
    warning = doc["machine"]["load"]["warning"]
    doc["warnings"] = [warning] if warning else []
    if warning:
        doc["notes"].insert(0, f"WARNING: {warning}.")
    return doc


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = log) -> dict:
    """Measure every form over the grid of `cfg`, watching the machine's load; returns the results document
    (see report.write_outputs). Training cost (``cfg.train``) is `adapterx.bench.train_runner.run_train_bench`."""
    if cfg.train:
        raise AdapterxError("bench: run_bench measures inference; use train_runner.run_train_bench for --train")
    cfg = with_defaults(cfg)
    return guarded(cfg, lambda: _run_inference(cfg, log))


def _notes(cfg: BenchConfig, shape_note: str, pairs: list[tuple[str, str]]) -> list[str]:
    notes = [n for n in (shape_note,) if n]
    skipped = [(d, t) for d in cfg.devices for t in cfg.dtypes if (d, t) not in pairs]
    if skipped:
        notes.append(f"skipped {skipped}: fp16 is CUDA-only")
    notes.append(
        "Other processes may share these CPUs (see machine.load in results.json: the 1-minute load "
        "average sampled before, during and after the run): forms are interleaved round by round so that "
        "such drift hits every form alike."
    )
    if cfg.clock == "instructions":
        notes.append(
            "CPU 'timings' are INSTRUCTION COUNTS (--clock instructions: callgrind through "
            "torch.utils.benchmark, one valgrind process per grid point, denoised), not time: "
            "deterministic, so small differences are decided on a busy machine, but cache misses, memory "
            "stalls, vector width and frequency do not show. Ratios are instruction ratios."
        )
    if cfg.clock == "cpu" and "cpu" in cfg.devices:
        notes.append(
            "CPU timings are process CPU time (--clock cpu), not wall time: waiting for a core shared "
            "with other processes is not counted"
            + ("" if set(cfg.threads) == {1} else "; with several threads, OpenMP barrier spinning is counted too")
        )
    notes.append(
        "Memory: on CPU the process's peak RSS (all forms share one process and the base weights), on "
        "CUDA torch.cuda.max_memory_allocated of one forward pass of each form."
    )
    notes.append(
        "Ratios are medians of per-round paired ratios (form time / base time in the same round); "
        "p10-p90 of those ratios is their spread, [CI] the 95% bootstrap interval of the median (rounds "
        "resampled), which narrows as rounds are added. 'within noise' = the spread covers 1.0 or exceeds "
        "the difference claimed."
    )
    return notes


def _document(cfg: BenchConfig, backbone_name: str, backbone, notes: list[str]) -> dict:
    mcfg = backbone.model.config
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "adapterx bench",
        "command": cfg.command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": env.machine(),
        "versions": env.versions(),
        "git_commit": env.git_commit(),
        "settings": cfg.to_dict(),
        "backbone": {
            "name": backbone_name,
            "requested": cfg.shape,
            "weights": "pretrained" if backbone.pretrained else "random",
            "description": backbone.description,
            "hidden_size": mcfg.hidden_size,
            "num_hidden_layers": mcfg.num_hidden_layers,
            "num_attention_heads": mcfg.num_attention_heads,
            "intermediate_size": mcfg.intermediate_size,
            "vocab_size": mcfg.vocab_size,
            "attn_implementation": mcfg._attn_implementation,
        },
        "forms": {},
        "results": [],
        "notes": notes,
    }


def _build_forms(
    cfg: BenchConfig, base: nn.Module, device: str, dtype_name: str, doc: dict, log: Callable[[str], None]
) -> dict[str, Form]:
    ctx = FormContext(base, rank=cfg.rank, reduction_factor=cfg.reduction_factor, seed=cfg.seed)
    log(f"bench: building {len(cfg.forms)} forms on {device}/{dtype_name} ...")
    forms = {name: build_form(name, ctx) for name in cfg.forms}
    base_params = count_parameters(base)
    for name, f in forms.items():
        n = count_parameters(f.module)
        doc["forms"].setdefault(
            name,
            {
                "description": f.description,
                "reference": f.reference,
                "params_total": n,
                "params_added": n - base_params,
            },
        )
    return forms


def _log_estimate(
    cfg: BenchConfig, forms: dict[str, Form], device: str, vocab: int, log: Callable[[str], None]
) -> None:
    probe = make_batch(vocab, min(cfg.batch_sizes), min(cfg.seq_lens), device, cfg.seed)
    clock = Clock(device, cfg.clock)
    with torch.inference_mode():
        forms["base"](probe)
        probe_s = clock(lambda: forms["base"](probe))
    passes, secs = estimate(cfg, probe_s, probe.input_ids.numel(), len(forms))
    log(
        f"bench: grid of {cfg.grid_size()} points x {len(forms)} forms x {cfg.warmup + cfg.iterations} rounds = "
        f"{passes} forward passes; estimated {secs / 60:.1f} min (from one probe pass; excludes building and "
        f"compiling"
        + ("; --target-ci may add rounds up to --max-seconds" if cfg.target_ci else "")
        + ("; instruction counting under valgrind takes far longer" if cfg.clock == "instructions" else "")
        + ")"
    )


def _run_inference(cfg: BenchConfig, log: Callable[[str], None]) -> dict:
    check_form_names(cfg.forms)
    pairs = check_devices(cfg)
    backbone_name, shape_note = resolve_shape(cfg.shape)
    started = time.time()
    log(f"bench: loading backbone {backbone_name} ...")
    backbone = load_backbone(backbone_name, seed=cfg.seed, fingerprint=False)
    base_cpu = backbone.model
    base_cpu.set_attn_implementation(cfg.attention)
    mcfg = base_cpu.config
    virtual = max(virtual_tokens(f) for f in cfg.forms)
    too_long = [s for s in cfg.seq_lens if s + virtual > usable_positions(mcfg)]
    if too_long:
        raise AdapterxError(
            f"bench: sequence length(s) {too_long} exceed the backbone's maximum "
            f"{usable_positions(mcfg)}"
            + (f" with {virtual} virtual tokens of a form's adapters in front" if virtual else "")
        )
    doc = _document(cfg, backbone_name, backbone, _notes(cfg, shape_note, pairs))
    from tqdm import tqdm

    total_rounds = (
        len(pairs) * len(cfg.modes) * len(cfg.threads) * len(cfg.batch_sizes) * len(cfg.seq_lens) * cfg.iterations
    )
    bar = tqdm(
        total=total_rounds, desc="bench rounds", unit="round", disable=not show_progress(cfg.progress), file=sys.stderr
    )
    default_threads = torch.get_num_threads()
    run_deadline, points_left = time.monotonic() + cfg.max_seconds, cfg.grid_size()
    try:
        for device, dtype_name in pairs:
            dtype = TORCH_DTYPES[dtype_name]
            base = base_cpu if (device, dtype) == ("cpu", torch.float32) else copy.deepcopy(base_cpu).to(device, dtype)
            forms = _build_forms(cfg, base, device, dtype_name, doc, log)
            if (device, dtype_name) == pairs[0]:
                _log_estimate(cfg, forms, device, mcfg.vocab_size, log)
            for mode, threads, bs, seq in itertools.product(cfg.modes, cfg.threads, cfg.batch_sizes, cfg.seq_lens):
                torch.set_num_threads(threads or default_threads)
                bar.set_postfix_str(f"{device} {dtype_name} {mode} t={torch.get_num_threads()} b={bs} s={seq}")
                deadline = point_deadline(run_deadline, points_left)
                points_left -= 1
                doc["results"].extend(
                    _measure_point(cfg, forms, device, dtype_name, mode, bs, seq, mcfg.vocab_size, bar, deadline)
                )
            del forms, base
    finally:
        bar.close()
        torch.set_num_threads(default_threads)
    doc["targets"] = evaluate_targets(doc["results"])
    if cfg.target_ci:
        doc["target_ci"] = target_ci_summary(cfg, doc["results"])
        doc["notes"].append(doc["target_ci"]["summary"])
    doc["elapsed_s"] = round(time.time() - started, 1)
    return doc


def _grow(bar) -> Callable[[int], None]:
    def grow(n: int) -> None:
        bar.total += n
        bar.refresh()

    return grow


def _measure_point(
    cfg: BenchConfig,
    forms: dict[str, Form],
    device: str,
    dtype_name: str,
    mode: str,
    bs: int,
    seq: int,
    vocab: int,
    bar,
    deadline: float,
) -> list[dict]:
    batch = make_batch(vocab, bs, seq, device, cfg.seed)
    errors: dict[str, str] = {}
    counting = cfg.clock == "instructions"
    if counting:  # each form counted in its own valgrind process; nothing timed here
        times = count_instructions(list(forms), forms["base"].module, cfg, bs, seq, torch.get_num_threads())
        bar.update(cfg.iterations)
        stop, widest = "instructions counted", widest_interval(times, {n: f.reference for n, f in forms.items()})
        fns: dict = {}
    else:
        fns = _callables(forms, mode, cfg, device, batch, errors)
        references = {name: forms[name].reference for name in fns}
        times, stop, widest = measure_rounds(
            fns, references, cfg, Clock(device, cfg.clock), deadline, progress=bar.update, grow=_grow(bar)
        )
    peak_rss = env.peak_rss_mb()
    point = {
        "device": device,
        "dtype": dtype_name,
        "threads": torch.get_num_threads(),
        "mode": mode,
        "batch_size": bs,
        "seq_len": seq,
    }
    rows = []
    for name, f in forms.items():
        row = dict(
            point,
            form=name,
            iterations=len(times["base"]),
            reference=f.reference,
            stop=stop,
            widest_half_ci=round(widest, 5),
        )
        if name in errors:
            rows.append(dict(row, error=errors[name]))
            continue
        t = times[name]
        med = summarize(t)["median"]
        if counting:
            rows.append(
                dict(
                    row,
                    instructions=summarize(t),
                    time_ms=None,
                    throughput=None,
                    error=None,
                    memory={"cpu_peak_rss_mb": None, "cuda_max_allocated_mb": None},
                    ratio_to_base=paired_ratio(t, times["base"], seed=cfg.seed),
                    ratio_to_reference=(
                        paired_ratio(t, times[f.reference], seed=cfg.seed) if f.reference in times else None
                    ),
                )
            )
            continue
        row.update(
            time_ms={k: (v * 1000 if k != "cv" else v) for k, v in summarize(t).items()},
            ratio_to_base=paired_ratio(t, times["base"], seed=cfg.seed),
            ratio_to_reference=(paired_ratio(t, times[f.reference], seed=cfg.seed) if f.reference in times else None),
            throughput={"sequences_per_s": bs / med, "tokens_per_s": bs * seq / med},
            memory={
                "cpu_peak_rss_mb": round(peak_rss, 1),
                "cuda_max_allocated_mb": round(_cuda_peak_mb(fns[name]), 1) if device == "cuda" else None,
            },
            error=None,
        )
        rows.append(row)
    return rows
