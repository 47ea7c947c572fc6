"""Inference-overhead benchmark of adapter deployment forms (``adapterx bench``).

Modules, one job each: ``config`` (settings dataclass with help text), ``forms`` / ``lora_forms`` /
``bottleneck_forms`` (the deployment forms, registered by name), ``timing`` (interleaved timing and paired
ratios), ``runner`` (the grid), ``targets`` (the issue's targets as verdicts), ``report`` (JSON, CSV, Markdown,
plots, README section), the CLI (``adapterx.cli.bench``). The fast LoRA layers live in :mod:`adapterx.deploy.fastlora`.


May import `core`, `methods` (public functions), `store`, `tasks`, `deploy` and `training`; never peft or the
adapters library (a kind builds its own bench form). ``from adapterx.bench.runner import run_bench`` measures a
`BenchConfig`.
"""
