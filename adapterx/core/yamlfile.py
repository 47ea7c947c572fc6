"""YAML from files a user hands over (task files, recipes): ``yaml.safe_load`` semantics with bounds.

``yaml.safe_load`` builds no objects beyond plain data, but it still reads a file of any size and expands
aliases without limit: a few hundred bytes of nested ``&a [*a, *a, ...]`` stand for billions of nodes, which
whatever walks the data afterwards (a merge, an error message, JSON) then pays for. Here a file is refused above
`MAX_BYTES`, and a document whose nodes, aliases expanded, would exceed `MAX_NODES` is refused before anything
is built (the count is taken on the composed node graph, each aliased node counted once per use, without
expanding anything).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from adapterx.core.errors import AdapterxError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_NODES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int], limit: int) -> int:
    """Nodes of the document under `node` with every alias expanded, counted once per node object (memoised)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = limit + 1  # a node reached again while being counted: a recursive structure
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, sizes, limit) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes, limit) + _expanded_size(v, sizes, limit) for k, v in node.value)
    else:
        total = 1
    sizes[key] = min(total, limit + 1)
    return sizes[key]


def loads(text: str, where: str, max_nodes: int = MAX_NODES) -> object:
    """The one YAML document in `text` as plain data (safe_load's types); an AdapterxError naming `where` if it
    is not YAML, holds several documents, or expands to more than `max_nodes` nodes."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, max_nodes) > max_nodes:
            raise AdapterxError(
                f"{where}: the YAML expands to more than {max_nodes} nodes (aliases counted as often as used); "
                f"write the data out, or use fewer aliases"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:300]
        raise AdapterxError(f"{where}: not valid YAML: {first}") from exc
    finally:
        loader.dispose()


def load_file(path: Path, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> object:
    """`loads` of a UTF-8 file of at most `max_bytes` bytes; errors name the file."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise AdapterxError(f"{path}: {size} bytes; a YAML file here may have at most {max_bytes}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdapterxError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise AdapterxError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return loads(text, str(path), max_nodes)
