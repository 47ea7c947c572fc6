"""Training cost of each adapter kind against full fine-tuning of the same backbone, batch and sequence length.

Each (kind, batch, sequence length) is measured in a FRESH subprocess (``python -m adapterx.bench.train_cost``),
so that one kind's memory peak cannot hide another's. In it: the backbone is built, the kind attached (or, for
``full``, every backbone weight made trainable) with a classification head, and training steps are run on random
tokens and labels (every row full length): forward, loss, backward, gradient clipping at 1.0 and an AdamW step,
as adapterx's training loop does (dropout on). After ``warmup`` untimed steps, ``iterations`` steps are timed.

Measured, per kind:
  * step time (median, p10-p90 over the timed steps) and tokens/s = batch x seq / median step time;
  * peak memory of the training phase: on CPU the peak resident set size (VmHWM) from the end of model building
    to the end of the last step (the peak is reset before training through /proc/self/clear_refs; where that is
    unavailable, the whole process's peak, which then includes building), and the resident size the built model
    had before training; on CUDA ``torch.cuda.max_memory_allocated`` over the steps (tensors only, no allocator
    cache), and the allocated size before training;
  * trainable parameters (adapter + head; for ``full``, the whole encoder + head) and the total;
  * checkpoint size on disk: what adapterx saves for an adapter (its weights, head and metadata files; the
    library's own format), and for ``full`` the encoder and head weights as one safetensors file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from adapterx import store
from adapterx.bench import env
from adapterx.bench.timing import summarize
from adapterx.core.backbone import load_backbone
from adapterx.core.heads import HeadSpec
from adapterx.core.io import atomic_write_json
from adapterx.core.log import show_progress
from adapterx.core.model import AdaptedModel
from adapterx.core.plugins import import_file, imported
from adapterx.methods import get_method, parse_spec

WORKER_TIMEOUT_S = 3600


def kind_options(kind: str, job: dict) -> dict | None:
    """The adapter spec a kind is trained with, as the kind names it from the bench's settings
    (`Method.train_bench_spec`); None for full fine-tuning."""
    if kind == "full":
        return None
    return get_method(kind).train_bench_spec(job).to_json()


def load_job_plugins(job: dict) -> None:
    """In a worker: import the plugins the parent had imported (from the same files), so that a kind a plugin
    registered is known here too."""
    for name, file in job.get("plugins", {}).items():
        import_file(name, file)


# ------------------------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def rss_now_mb() -> float:
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else (env.current_rss_mb() or float("nan"))


def peak_rss_since_reset_mb(was_reset: bool) -> float:
    kib = _status_kib("VmHWM") if was_reset else None
    return kib / 1024 if kib is not None else env.peak_rss_mb()


# ------------------------------------------------------------------------------------------------ worker
def _build(job: dict):
    backbone = load_backbone(job["backbone"], seed=job["seed"], fingerprint=False)
    backbone.model.set_attn_implementation(job["attention"])
    model = AdaptedModel(backbone)
    options = kind_options(job["kind"], job)
    if options is not None:
        store.add_adapter(model, "x", parse_spec(options))
        store.activate(model, ["x"], trainable="x")
    else:
        for p in model.encoder.parameters():
            p.requires_grad_(True)
    model.add_head("x", HeadSpec("classification", 3))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[job["dtype"]]
    return model.to(job["device"], dtype), backbone


def _batch(job: dict, vocab: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(job["seed"] + 7)
    ids = torch.randint(5, vocab, (job["batch_size"], job["seq_len"]), generator=gen)
    ids[:, 0], ids[:, -1] = 0, 2
    labels = torch.randint(0, 3, (job["batch_size"],), generator=gen)
    return {
        k: v.to(job["device"])
        for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}.items()
    }


def _checkpoint_bytes(model, kind: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "full":
            state = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
            state.update({f"head.{k}": v for k, v in model.heads["x"].state_dict().items()})
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in state.items()}, str(Path(tmp) / "model.safetensors")
            )
        else:
            store.save_adapter(model, "x", Path(tmp) / "adapter", head="x")
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())


def measure_kind(job: dict) -> dict:
    """Build, train `warmup` + `iterations` steps and measure one kind (call in a fresh process)."""
    torch.manual_seed(job["seed"])
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    cuda = job["device"] == "cuda"
    model, backbone = _build(job)
    model.train()
    batch = _batch(job, backbone.model.config.vocab_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5 if job["kind"] == "full" else 1e-3)
    loaded = torch.cuda.memory_allocated() / 2**20 if cuda else rss_now_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        was_reset = True
    else:
        was_reset = reset_peak_rss()
    times = []
    for i in range(job["warmup"] + job["iterations"]):
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= job["warmup"]:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_since_reset_mb(was_reset)
    counts = model.parameter_counts()
    stats = summarize(times)
    config = backbone.model.config
    return {
        "kind": job["kind"],
        "device": job["device"],
        "dtype": job["dtype"],
        "threads": torch.get_num_threads(),
        "batch_size": job["batch_size"],
        "seq_len": job["seq_len"],
        "steps": job["iterations"],
        "spec": kind_options(job["kind"], job),
        "step_ms": {k: (v * 1000 if k != "cv" else v) for k, v in stats.items()},
        "tokens_per_s": job["batch_size"] * job["seq_len"] / stats["median"],
        "memory": {
            "measure": "cuda_max_allocated" if cuda else ("rss_peak_training" if was_reset else "rss_peak_process"),
            "peak_mb": round(peak, 1),
            "before_training_mb": round(loaded, 1),
        },
        "params": {"trainable": counts["trainable"], "total": counts["total"]},
        "checkpoint_bytes": _checkpoint_bytes(model, job["kind"]),
        "final_loss": float(loss.detach()),
        "backbone": {
            "name": backbone.name,
            "weights": "pretrained" if backbone.pretrained else "random",
            "description": backbone.description,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "vocab_size": config.vocab_size,
            "attn_implementation": config._attn_implementation,
        },
        "pid": os.getpid(),
        "error": None,
    }


def run_worker(job: dict, timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Run `measure_kind(job)` in a fresh Python process; a failure becomes a row with its error."""
    root = str(Path(__file__).resolve().parents[2])
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="adapterx-train-cost-") as tmp:
        out = Path(tmp) / "row.json"
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "adapterx.bench.train_cost", json.dumps(job), str(out)],
                cwd=root,
                env=environ,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return _failed(job, f"timed out after {timeout:.0f} s")
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return _failed(job, f"worker exited with {proc.returncode}: {tail}")
        return json.loads(out.read_text(encoding="utf-8"))


def _failed(job: dict, why: str) -> dict:
    return {k: job[k] for k in ("kind", "device", "dtype", "threads", "batch_size", "seq_len")} | {"error": why}


def jobs(cfg, backbone_name: str, pairs: list[tuple[str, str]]) -> list[dict]:
    """One job per (device/dtype, threads, batch size, seq len, kind), kinds innermost."""
    return [
        {
            "backbone": backbone_name,
            "kind": kind,
            "device": device,
            "dtype": dtype,
            "threads": threads,
            "batch_size": bs,
            "seq_len": seq,
            "warmup": cfg.warmup,
            "iterations": cfg.iterations,
            "rank": cfg.rank,
            "reduction_factor": cfg.reduction_factor,
            "virtual_tokens": 16,
            "seed": cfg.seed,
            "attention": cfg.attention,
            "plugins": _plugins(kind),
        }
        for device, dtype in pairs
        for threads in cfg.threads
        for bs in cfg.batch_sizes
        for seq in cfg.seq_lens
        for kind in cfg.train_kinds
    ]


def _plugins(kind: str) -> dict[str, str]:
    """{module: file} a worker imports first: the plugins this process imported, and the module that defines
    `kind` if it comes from outside adapterx (a kind registered by a test or a script)."""
    out = {name: file for name, file in imported().items() if file}
    if kind != "full":
        module = type(get_method(kind)).__module__
        file = getattr(sys.modules.get(module), "__file__", None)
        if not module.startswith("adapterx.") and file and module != "__main__":
            out.setdefault(module, file)
    return out


def run_train_jobs(job_list: list[dict], log: Callable[[str], None], progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for job in tqdm(job_list, desc="train cost", unit="kind", disable=not show_progress(progress), file=sys.stderr):
        started = time.time()
        row = run_worker(job)
        log(
            f"bench --train: {job['kind']} b={job['batch_size']} s={job['seq_len']}: "
            + (
                f"{row['step_ms']['median']:.0f} ms/step, peak {row['memory']['peak_mb']:.0f} MB"
                if row.get("error") is None
                else f"failed: {row['error']}"
            )
            + f" ({time.time() - started:.0f} s)"
        )
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    """Worker entry point: measure the job given as JSON and write its row to the file named second."""
    if len(argv) != 2:
        raise SystemExit(
            "usage: python -m adapterx.bench.train_cost '<job json>' OUT.json (a worker of `adapterx bench --train`)"
        )
    job = json.loads(argv[0])
    load_job_plugins(job)
    atomic_write_json(Path(argv[1]), measure_kind(job))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
