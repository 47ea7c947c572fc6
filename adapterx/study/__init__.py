"""A study from a recipe: the recipe schema, the runner (independent jobs, phases cached by a hash of their
inputs), per-language evaluation, the comparison of saved setups (`adapterx evaluate`), summary statistics
(benefit over the baseline, intervals, overheads) and the report (report.md, results.json, plots).

The top library layer: may import every package except `cli`.
"""
