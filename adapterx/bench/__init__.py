"""Inference-overhead benchmark of adapter deployment forms (``adapterx bench``).

Modules, one job each: ``config`` (settings dataclass with help text), ``forms`` / ``lora_forms`` /
``bottleneck_forms`` (the deployment forms, registered by name), ``timing`` (interleaved timing and paired
ratios), ``runner`` (the grid), ``targets`` (the issue's targets as verdicts), ``report`` (JSON, CSV, Markdown,
plots, README section), ``cli`` (the subcommand). The fast LoRA layers live in :mod:`adapterx.fastlora`.
"""

from adapterx.bench.config import BenchConfig

__all__ = ["BenchConfig", "run_bench"]


def run_bench(config: BenchConfig) -> dict:
    """Measure every form over the grid of `config`; returns the results document."""
    from adapterx.bench.runner import run_bench as _run
    return _run(config)
