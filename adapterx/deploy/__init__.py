"""From saved adapters to a model that serves: deployment forms (unmerged / fused / merged / mixed, one registry
entry each: how a form is built and how many modules it runs), load-time composition (stack, sum, weighted, mixed
per row) with manifests, merging LoRA into a plain transformers checkpoint, fast library-free inference layers
(fastlora), and rebuilding a trained setup for inference.

May import `core`, `methods` (public functions only) and `store`. Library-free: what it needs from peft or the
adapters library is an operation of the adapter kind's Method.
"""
