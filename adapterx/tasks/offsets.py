"""Character offsets of fast-tokenizer tokens, made to cover all of the text they stand for.

A tokenizer's normaliser may merge characters: NFKC (XLM-R's normaliser) composes ``e`` + U+0301 into ``é``, and
`tokenizers` maps the composed character back to the ``e`` alone. The accent is then covered by no token, and a
span cut from the offsets ("Cafe" for the token ``▁Café``) loses it. `cover_absorbed_marks` extends a token's end
over the combining marks that follow it and that no token of the whole text covers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def cover_absorbed_marks(
    text: str, offsets: Sequence[Sequence[int]], all_offsets: Sequence[Sequence[int]] | None = None
) -> list[tuple[int, int]]:
    """`offsets` with each token's end moved past the uncovered combining marks right after it. Coverage is
    read from `all_offsets` (the whole text's tokens; default `offsets`), so that a window of a long text does
    not take a mark that a token outside the window covers."""
    covered = [False] * len(text)
    for start, end in offsets if all_offsets is None else all_offsets:
        covered[start:end] = [True] * (end - start)
    widened = []
    for start, end in offsets:
        while start < end < len(text) and not covered[end] and unicodedata.category(text[end]).startswith("M"):
            end += 1
        widened.append((start, end))
    return widened
