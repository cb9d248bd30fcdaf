"""YAML from users' files, bounded: aliases may not expand a small file into a huge tree.

PyYAML builds an alias once and shares it, so loading a "billion laughs" file is quick; but
everything that walks the result afterwards (schema validation, defaults, merging, the plan)
visits every expanded value: a 1 KB file of nine nested aliases kept ``mixscale check`` busy
for minutes (about 9x per level). An alias inside the node it names makes a tree that never
ends. Before loading, one pass over the parser's events counts the values the file expands
to and how deep it nests, with the aliases expanded, in time linear in the file.

Every YAML file a user hands mixscale (configs, worlds, training settings) is read here.
"""

from __future__ import annotations

from typing import Any

import yaml

from mixscale.errors import InputError

# A config has hundreds of values, a world with 10,000 domains tens of thousands; walking a
# million takes about a second. Configs nest a few levels (section, list, entry, field).
MAX_VALUES = 1_000_000
MAX_DEPTH = 64

_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def load_bounded(text: str, source: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """The YAML document in ``text``, after ``check_expansion``. Syntax errors are PyYAML's
    (``yaml.YAMLError``), for the caller to word; an oversized document is an InputError."""
    check_expansion(text, source, loader)
    return yaml.load(text, Loader=loader)  # a SafeLoader: no Python objects


def check_expansion(text: str, source: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader):
    """Refuse, in one line naming the line of the file, a document that expands (aliases
    resolved) to more than MAX_VALUES values, nests deeper than MAX_DEPTH, or holds an alias
    inside the node it names."""
    parser = loader(text)
    size: dict[str, int] = {}  # per anchor: the values its node expands to
    depth: dict[str, int] = {}  # per anchor: the levels its node spans
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, its first value's number)
    deepest_below: list[int] = [0]  # per open level (and the document): its deepest child
    total = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, _OPEN):
                total += 1
                open_nodes.append((event.anchor, total))
                deepest_below.append(0)
                if len(open_nodes) > MAX_DEPTH:
                    _refuse(source, event, f"nested more than {MAX_DEPTH} levels deep", _FLAT)
            elif isinstance(event, _CLOSE):
                anchor, first = open_nodes.pop()
                levels = deepest_below.pop() + 1
                deepest_below[-1] = max(deepest_below[-1], levels)
                if anchor is not None:
                    size[anchor], depth[anchor] = total - first + 1, levels
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                deepest_below[-1] = max(deepest_below[-1], 1)
                if event.anchor is not None:
                    size[event.anchor], depth[event.anchor] = 1, 1
            elif isinstance(event, yaml.AliasEvent):
                if any(anchor == event.anchor for anchor, _ in open_nodes):
                    _refuse(source, event, f"alias *{event.anchor} inside the node it names", _LOOP)
                if event.anchor not in size:
                    continue  # an undefined alias: the loader says so, with its line
                total += size[event.anchor]
                deepest_below[-1] = max(deepest_below[-1], depth[event.anchor])
                if len(open_nodes) + depth[event.anchor] > MAX_DEPTH:
                    _refuse(source, event, f"nested more than {MAX_DEPTH} levels deep", _FLAT)
            if total > MAX_VALUES:
                _refuse(source, event, f"expands to more than {MAX_VALUES:,} values", _BOMB)
    finally:
        parser.dispose()


_BOMB = "write the values out, or nest fewer aliases (a 'billion laughs' file)"
_LOOP = "an alias can only repeat a node that is already complete"
_FLAT = "configs nest a few levels of keys and lists"


def _refuse(source: str, event: yaml.Event, problem: str, fix: str) -> None:
    line = event.start_mark.line + 1 if event.start_mark else 0
    raise InputError(source, f"line {line}", f"YAML {problem}", fix)
