"""`adapterx tasks`: the registered tasks with their role, head, metric and languages (``--json`` for tools)."""

from __future__ import annotations

import argparse
import json

from adapterx.cli.plugins import add_plugin_arguments
from adapterx.tasks import all_tasks, get_task
from adapterx.tasks.sources import describe_loader


def task_info(task, sources: bool = False) -> dict:
    info = {
        "name": task.name,
        "role": task.role,
        "head": task.head,
        "metric": task.metric,
        "train_language": task.train_language,
        "languages": list(task.languages),
        "splits": list(task.splits),
        "num_labels": task.num_labels,
        "description": task.description,
    }
    if sources:
        info["sources"] = {
            split: {
                lang: describe_loader(task.loader, split, lang)
                for lang in ((task.train_language,) if split == "train" else task.languages)
            }
            for split in task.splits
            if split != "train" or task.trainable
        }
    return info


def run_tasks(args: argparse.Namespace) -> int:
    tasks = [get_task(name) for name in args.names] if args.names else all_tasks()
    if args.role:
        tasks = [t for t in tasks if t.role == args.role]
    infos = [task_info(t, sources=args.json or bool(args.names)) for t in tasks]
    if args.json:
        print(json.dumps(infos, indent=2, ensure_ascii=False))
        return 0
    header = ("task", "role", "head", "metric", "train", "languages")
    rows = [
        (
            i["name"],
            i["role"],
            i["head"],
            i["metric"],
            i["train_language"] or "-",
            f"{len(i['languages'])}: {' '.join(i['languages'])}",
        )
        for i in infos
    ]
    widths = [max(len(str(r[c])) for r in (header, *rows)) for c in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    if args.names:  # details: where each split comes from
        for info in infos:
            print(f"\n{info['name']}: {info['description']}")
            for split, per_language in info["sources"].items():
                distinct = sorted(set(per_language.values()))
                where = distinct[0] if len(distinct) == 1 else f"{distinct[0]} … ({len(per_language)} languages)"
                print(f"  {split:<10} {where}")
    return 0


def add_tasks_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tasks",
        help="list the registered tasks (name, role, head, metric, languages)",
        description="List the registered tasks; name tasks to see where their data comes from.",
    )
    parser.add_argument("names", nargs="*", help="only these tasks (with their data sources)")
    parser.add_argument("--role", choices=("intermediate", "target"), help="only tasks of this role")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_plugin_arguments(parser)
    parser.set_defaults(func=run_tasks)
    return parser
