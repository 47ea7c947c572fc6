"""Which languages each evaluation split of a task has, and whether its dev split is held out from its test.

A study selects (the best intermediate task per target) on dev and reports on test, so it must know where a
dev split exists: XQuAD's only dev set is SQuAD's English one; UDPOS has no dev set in Kazakh, Thai, Tagalog and
Yoruba (jiant's XTREME scripts evaluate them on test only); TyDiQA-GoldP's "dev" is the set XTREME reports as
test, so it is no held-out dev; Tatoeba has a test split only. Tasks say so with two options:
``test_only_languages`` and ``dev_is_test`` (the reason, as text).
"""

from __future__ import annotations

from adapterx.tasks.base import Task
from adapterx.tasks.sources import BySplit, Source

DEV, TEST = "validation", "test"


def no_dev_reason(task: Task) -> str | None:
    """Why `task` has no held-out dev split at all (None: it has one)."""
    if DEV not in task.splits:
        return f"{task.name} has no dev split"
    if task.options.get("dev_is_test"):
        return str(task.options["dev_is_test"])
    return None


def split_languages(task: Task, split: str) -> tuple[str, ...]:
    """The languages in which `task` has `split` (for dev: a held-out one)."""
    if split not in task.splits:
        return ()
    if split != DEV:
        return (task.train_language,) if split == "train" and task.train_language else task.languages
    if no_dev_reason(task):
        return ()
    loader = task.loader.source(DEV) if isinstance(task.loader, BySplit) else task.loader
    languages = task.languages
    if isinstance(loader, Source) and loader.languages is not None:
        languages = tuple(lang for lang in languages if lang in loader.languages)
    skip = task.options.get("test_only_languages", ())
    return tuple(lang for lang in languages if lang not in skip)


def evaluation_languages(task: Task, split: str, wanted: list[str] | None) -> list[str]:
    """The languages to evaluate `split` in: `wanted` (None: all) where the split has them; on dev, when none of
    `wanted` has one, the training language's dev (e.g. SQuAD's English dev for XQuAD)."""
    have = split_languages(task, split)
    chosen = [lang for lang in (wanted or have) if lang in have]
    if not chosen and split == DEV and task.train_language in have:
        chosen = [task.train_language]
    return chosen
