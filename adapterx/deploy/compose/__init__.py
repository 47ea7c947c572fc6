"""Load-time composition: several saved adapters on one frozen base, described as a small tree of blocks.

A composition names adapter *parts* (saved adapter directories, each given a name) and combines them:

  Stack(a, b)        bottom first; the head of the last part is used.
                     bottleneck: the adapters library's Stack (b reads a's output);
                     LoRA: all active at once, every layer gets W + ΔW_a + ΔW_b (order does not matter).
  Sum(a, b)          LoRA only: every delta added at once (the math of a LoRA stack, said explicitly).
  Weighted(a, b, weights=(.5, .5), method="weighted")   one adapter made from several:
                     LoRA, through peft's ``add_weighted_adapter``:
                       weighted         exact Σ w_i ΔW_i (peft "cat": factors concatenated, ranks add up)
                       linear           peft "linear": A's and B's averaged separately (an approximation)
                       ties, dare_linear, dare_ties, magnitude_prune   peft's task-vector merges of the factors
                                        (need `density` and equal ranks)
                     bottleneck, method "weighted" only: Σ w_i · adapter_i(x) on each layer's output (the
                       adapters library's Average), weights summing to 1.
                     Parts that carry heads must share one label set: the merged adapter is read by one head.
  Mixed(a, b, c)     many adapters on one base: each row of a batch names its adapter (and is read by that
                     adapter's head), one forward pass (peft's per-row ``adapter_names``, or
                     ``adapterx.deploy.fastlora``'s gathered LoRA with ``fast=True``; the adapters library's
                     BatchSplit).

Which kind takes part in which block, and how a block is realised, is the kind's Method's to say
(`composition_blocks`, `weighted_methods`, `composition_problem`, `activate_setup`, `encode_rows`): this
package never touches an adapter library.

Modules: `blocks` (the algebra, allowed nestings `ALLOWED_CHILDREN` -- a Stack holds names and Weighted blocks,
e.g. a language adapter under an average of task adapters; every other block holds names only -- and the CLI
modes), `parts` (reading saved adapters), `validate` (checked against the parts' metadata before any weight is
loaded), `runtime` (`ComposedModel`), `build` (`compose`, `load_manifest`) and `manifest` (one JSON file naming
every part, its path and its file digests).
"""

from adapterx.deploy.compose.blocks import (
    ALLOWED_CHILDREN,
    BLOCKS,
    MODES,
    WEIGHTED_METHODS,
    Block,
    CompositionMode,
    Mixed,
    Stack,
    Sum,
    Weighted,
    WeightedMethod,
    from_dict,
    from_mode,
    register_block,
)
from adapterx.deploy.compose.build import compose, load_manifest
from adapterx.deploy.compose.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    read_manifest,
    save_manifest,
)
from adapterx.deploy.compose.parts import Part, check_requirements, kinds_summary, read_part, read_parts
from adapterx.deploy.compose.runtime import ComposedModel
from adapterx.deploy.compose.validate import head_part, validate

__all__ = [
    "ALLOWED_CHILDREN",
    "BLOCKS",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "MODES",
    "WEIGHTED_METHODS",
    "Block",
    "ComposedModel",
    "CompositionMode",
    "Mixed",
    "Part",
    "Stack",
    "Sum",
    "Weighted",
    "WeightedMethod",
    "check_requirements",
    "compose",
    "from_dict",
    "from_mode",
    "head_part",
    "kinds_summary",
    "load_manifest",
    "read_manifest",
    "read_part",
    "read_parts",
    "register_block",
    "save_manifest",
    "validate",
]
