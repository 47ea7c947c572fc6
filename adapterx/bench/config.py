"""The benchmark's settings: one dataclass whose fields carry their own help text (used by the CLI)."""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields

from adapterx.core.errors import AdapterxError

DTYPES = ("fp32", "bf16", "fp16")
CLOCKS = ("wall", "cpu", "instructions")
COMPILE_CHOICES = ("off", "on", "both")


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass
class BenchConfig:
    """What to measure and how. Every field is one CLI option (``--batch-sizes`` for ``batch_sizes``)."""

    shape: str = _help(
        "Backbone: 'xlm-roberta-base' / 'xlm-roberta-large' / 'multilingual-e5-small' (alias "
        "'e5-small'; BERT) (real shapes; pretrained weights if they are at hand, else RANDOM "
        "weights via 'random:<arch>'), 'builtin:tiny-xlmr' or 'builtin:multilingual-e5-small'. "
        "The output says which weights were used.",
        default="xlm-roberta-base",
    )
    forms: tuple[str, ...] = _help(
        "Deployment forms to time, comma-separated (see the list above). Empty: 'base' and each adapter kind's "
        "own default forms (with --quick, its quick ones), as the kind lists them.",
        default=(),
    )
    batch_sizes: tuple[int, ...] = _help("Batch sizes (1 = online serving, >=32 = offline scoring).", default=(1, 32))
    seq_lens: tuple[int, ...] = _help("Sequence lengths in tokens (every row full length).", default=(128, 512))
    dtypes: tuple[str, ...] = _help(
        "Weight/activation dtypes: fp32, bf16, fp16 (fp16 on CUDA only).", default=("fp32",)
    )
    devices: tuple[str, ...] = _help("Devices: cpu, cuda.", default=("cpu",))
    threads: tuple[int, ...] = _help("torch CPU thread counts (0 = torch's current default).", default=(0,))
    compile: str = _help("torch.compile the forms: off, on, or both (eager and compiled, as two modes).", default="off")
    compile_mode: str = _help(
        "torch.compile mode; 'default' on CPU, 'reduce-overhead' (CUDA graphs) is the "
        "usual choice on CUDA. 'auto' picks that per device.",
        default="auto",
    )
    attention: str = _help("Attention implementation: sdpa or eager.", default="sdpa")
    clock: str = _help(
        "What a CPU timing measures: 'wall' (wall clock), 'cpu' (process CPU time: robust when "
        "other processes share the cores; use with --threads 1), or 'instructions' (instructions "
        "executed, counted by callgrind through torch.utils.benchmark: deterministic, so a 1%% "
        "difference can be decided on a busy machine, but NOT time: memory stalls and vector width "
        "do not show; needs valgrind; slow). CUDA always uses CUDA events.",
        default="wall",
    )
    iterations: int = _help("Timed rounds; each round runs every form once, interleaved (A B C A B C ...).", default=30)
    warmup: int = _help("Untimed warm-up rounds before timing.", default=3)
    target_ci: float = _help(
        "Keep adding rounds until the 95%% bootstrap interval of every ratio's median is within "
        "+-TARGET_CI (e.g. 0.01), or --max-seconds is spent; the output says which. 0 = a "
        "fixed number of rounds.",
        default=0.0,
    )
    max_seconds: float = _help(
        "Time budget of the whole run for --target-ci's extra rounds (shared out over the grid points).", default=600.0
    )
    train: bool = _help(
        "Measure TRAINING cost instead of inference: per kind of --train-kinds (and full "
        "fine-tuning), step time, tokens/s, peak memory, trainable parameters and checkpoint size, "
        "each kind in a fresh process. Defaults then: batch 16, seq 128, 5 timed steps after 1.",
        default=False,
    )
    train_kinds: tuple[str, ...] = _help(
        "Kinds --train measures ('full' = full fine-tuning of the backbone). Empty: full and every registered "
        "adapter kind, each with the spec it names for this bench (LoRA: --rank, bottleneck: "
        "--reduction-factor, prompt/prefix: 16 virtual tokens, others: their default spec).",
        default=(),
    )
    rank: int = _help("LoRA rank r of every LoRA adapter (alpha = 2r, target query+value).", default=8)
    reduction_factor: int = _help("Bottleneck adapter reduction factor (SeqBnConfig).", default=16)
    seed: int = _help("Seed for random weights, adapters and inputs.", default=0)
    output: str = _help("Output directory (default artifacts/bench/<timestamp>).", default="")
    readme: str = _help(
        "Markdown file (the tables live in docs/benchmarks.md) whose section between "
        "<!-- bench:SECTION:start --> and <!-- bench:SECTION:end --> is replaced by the generated "
        "table.",
        default="",
    )
    readme_section: str = _help("SECTION name of the markers --readme rewrites.", default="cpu")
    quick: bool = _help(
        "Small CI grid: builtin:tiny-xlmr, batch 1,4, seq 16,64, 1 thread (robust on shared CI "
        "cores), few forms and iterations; "
        "well under a minute. Explicit options still override it.",
        default=False,
    )
    progress: bool = _help("Show a progress bar over the timed rounds.", default=True)
    command: str = field(default="", metadata={"help": "The command line that produced this config (recorded)."})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("batch_sizes", "seq_lens", "dtypes", "devices", "threads"):
            if not getattr(self, name):
                raise AdapterxError(f"bench: --{name.replace('_', '-')} is empty")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad:
            raise AdapterxError(f"bench: unknown dtype(s) {bad}; known: {', '.join(DTYPES)}")
        bad = [d for d in self.devices if d not in ("cpu", "cuda")]
        if bad:
            raise AdapterxError(f"bench: unknown device(s) {bad}; known: cpu, cuda")
        if self.compile not in COMPILE_CHOICES:
            raise AdapterxError(f"bench: --compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.clock not in CLOCKS:
            raise AdapterxError(f"bench: --clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.clock == "instructions" and (set(self.devices) != {"cpu"} or self.compile != "off"):
            raise AdapterxError(
                "bench: --clock instructions counts CPU instructions: use --devices cpu and --compile off"
            )
        if self.clock == "instructions" and self.target_ci:
            raise AdapterxError("bench: instruction counts are deterministic; --target-ci is for timings")
        if self.target_ci < 0 or self.max_seconds <= 0:
            raise AdapterxError("bench: --target-ci must be >= 0 and --max-seconds > 0")
        if self.attention not in ("sdpa", "eager"):
            raise AdapterxError(f"bench: --attention must be sdpa or eager, got {self.attention!r}")
        if any(b < 1 for b in self.batch_sizes) or any(s < 2 for s in self.seq_lens):
            raise AdapterxError("bench: batch sizes must be >= 1 and sequence lengths >= 2")
        if self.iterations < 3 or self.warmup < 0:
            raise AdapterxError("bench: --iterations must be >= 3 (for p10/p90) and --warmup >= 0")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.readme_section):
            raise AdapterxError(f"bench: --readme-section must be a plain name, got {self.readme_section!r}")
        if self.forms and "base" not in self.forms:
            raise AdapterxError("bench: the forms must include 'base' (every ratio is measured against it)")
        if len(set(self.forms)) != len(self.forms):
            raise AdapterxError(f"bench: duplicate forms in {list(self.forms)}")

    @property
    def modes(self) -> tuple[str, ...]:
        return {"off": ("eager",), "on": ("compile",), "both": ("eager", "compile")}[self.compile]

    def grid_size(self) -> int:
        return (
            len(self.devices)
            * len(self.dtypes)
            * len(self.threads)
            * len(self.modes)
            * len(self.batch_sizes)
            * len(self.seq_lens)
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


TRAIN_OVERRIDES = dict(batch_sizes=(16,), seq_lens=(128,), iterations=5, warmup=1)
QUICK_OVERRIDES = dict(
    shape="builtin:tiny-xlmr",
    batch_sizes=(1, 4),
    seq_lens=(16, 64),
    threads=(1,),
    iterations=6,
    warmup=1,
)


def field_help(name: str) -> str:
    for f in fields(BenchConfig):
        if f.name == name:
            default = f.default if f.default is not MISSING else None
            if isinstance(default, tuple):
                default = ",".join(map(str, default))
            text = f.metadata.get("help", "")
            return f"{text} [default: {default}]" if default not in ("", None, False, True) else text
    raise KeyError(name)
