"""Inference-overhead benchmark of adapter deployment forms (``adapterx bench``).

Modules, one job each: ``config`` (settings dataclass with help text), ``forms`` (the form registry),
``adapted`` (forms served through adapterx.store: every kind's generic KIND / KIND-stack-K), ``lora_forms`` /
``bottleneck_forms`` / ``prompt_forms`` (the forms the kinds name in `Method.bench_builders`), ``timing`` (interleaved timing and paired
ratios), ``runner`` (the grid), ``targets`` (the issue's targets as verdicts), ``report`` (JSON, CSV, Markdown,
plots, README section), the CLI (``adapterx.cli.bench``). The fast LoRA layers live in :mod:`adapterx.deploy.fastlora`.


May import `core`, `methods` (public functions), `store`, `tasks`, `deploy` and `training`; never peft or the
adapters library (forms are built through `store` and the kind's Method). ``from adapterx.bench.runner import run_bench`` measures a
`BenchConfig`.
"""
