"""The list of bench forms, in a module without torch so that `adapterx --help` starts fast."""

FORM_HELP = """\
  base                    the plain transformers model (no adapter code at all)
  lora                    one LoRA adapter through peft, unmerged (r, alpha=2r, query+value, dropout 0)
  lora-fast               the same adapter through adapterx.deploy.fastlora (no peft loop, casts or dropout module)
  lora-merged             the same adapter merged into the weights (a plain model, no adapter code left)
  lora-stack-K            K LoRA adapters active together through peft (its Python loop over adapters)
  lora-stack-K-fused      the same K adapters as ONE low-rank product (A and B concatenated, fastlora)
  bottleneck              one bottleneck adapter (adapters SeqBnConfig) on a copy of the base
  bottleneck-stack-K      K bottleneck adapters in an adapters Stack
  lora-mixed-N            a batch whose rows use N different LoRA adapters, peft adapter_names (sub-batch loop)
  lora-mixed-N-gathered   the same mixed batch as one gathered per-row low-rank product (fastlora)
  prefix-N                prefix tuning with N virtual keys/values in every layer (peft; not mergeable)
  prompt-N                prompt tuning with N virtual input tokens (peft; not mergeable)
  KIND, KIND-stack-K      any adapter kind (e.g. one registered by a plugin): one adapter of its default spec, or
                          K of them stacked, with small random weights, served through adapterx.store"""
