"""Fuzzing the loader and the validator: no input raises, and every problem names a file and a line.

Hypothesis generates YAML-ish token soup, random nestings of block and flow collections (deep
ones included), random bytes, and valid manifests with random text spliced in. Each run is
bounded (`FUZZ_EXAMPLES` per test, 200 by default, no deadline) so it belongs in the normal
suite; a longer run by hand: `DRIFTWARDEN_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_loader.py`.

Besides "never raises", two properties keep the guards honest: the safety net that turns an
unexpected exception into a `file.check-failed` error must never be what caught something
(that would be a bug found), and the cheap `depth_bound` that decides whether the event scan
runs must never be below the depth libyaml actually reaches (or deep input could skip the
scan and crash the composer).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent, DocumentEndEvent

from driftwarden.manifests.loader import _Parser, depth_bound, load_bytes, may_nest_deeper
from driftwarden.manifests.validation import default_schemas, validate_documents

FUZZ_EXAMPLES = int(os.environ.get("DRIFTWARDEN_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
CORPUS = Path(__file__).parent / "corpus"
MANIFESTS = sorted(p.read_text() for p in (CORPUS / "valid").rglob("*.yaml")) + sorted(
    p.read_text() for p in (Path(__file__).parent.parent / "manifests").rglob("*.yaml")
)

TOKENS = [
    "- ", "? ", ": ", ":", "-", "[", "]", "{", "}", ", ", "&a ", "*a", "&b ", "*b", "!!str ", "!!int ",
    "!!map ", "!!seq ", "!custom ", "<<: ", "\n", "  ", "    ", "\t", "# c", "'", "''", '"', '\\0', '\\u0007',
    "|", ">-", "---\n", "...\n", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "a", "key", "1", "-1", "0x1F", "0o17",
    "0b101", "1_000", "1e999", "-.inf", ".nan", "1.5", "null", "~", "true", "yes", "2024-02-30", "\ufeff",
    "\u2028", "\x85", "é", "apiVersion: driftwarden/v1\n", "kind: Cluster\n", "kind: Deployment\n",
    "metadata:\n  name: x\n", "spec:\n", "tags:\n", "  nodePools:\n", "    - name: p\n", "9" * 30,
]


def yaml_soup() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


def nested() -> st.SearchStrategy[str]:
    """Random trees of block and flow collections, rendered with random indentation."""
    scalars = st.sampled_from(["x", "1", "0x10", "'q'", '"d\\n"', "*a", "&a v", "null", "1e5", ""])
    trees = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda items: ("seq", items)),
            st.lists(st.tuples(st.sampled_from(["a", "b", "<<", "1", "? k"]), inner), max_size=4).map(
                lambda items: ("map", items)
            ),
        ),
        max_leaves=40,
    )
    return st.tuples(trees, st.booleans(), st.integers(0, 3)).map(lambda t: render(t[0], t[1], 0, t[2]))


def render(tree: object, flow: bool, indent: int, step: int) -> str:
    if isinstance(tree, str):
        return tree
    kind, items = tree  # type: ignore[misc]
    if flow or not items:
        if kind == "seq":
            return "[" + ", ".join(render(i, True, 0, step) for i in items) + "]"
        return "{" + ", ".join(f"{k}: {render(v, True, 0, step)}" for k, v in items) + "}"
    pad = " " * indent
    lines = []
    for item in items:
        child_flow = (hash(repr(item)) % 3) == 0
        if kind == "seq":
            body = render(item, child_flow, indent + 2 + step, step)
            lines.append(f"{pad}- {body}" if "\n" not in body else f"{pad}-\n{body}")
        else:
            key, value = item
            body = render(value, child_flow, indent + 1 + step, step)
            lines.append(f"{pad}{key}: {body}" if "\n" not in body else f"{pad}{key}:\n{body}")
    return "\n".join(lines) + "\n"


def deep() -> st.SearchStrategy[str]:
    """A long chain of nesting openers of every kind, sometimes deep enough to crash libyaml's composer."""
    openers = st.sampled_from(["- ", "? ", "[", "{a: ", "- ? ", "&x [", "- !!seq ", "\n  - "])
    return st.tuples(st.lists(openers, min_size=1, max_size=6), st.integers(1, 40_000), st.sampled_from(["x", "*x", ""])).map(
        lambda t: "".join(t[0]) * (t[1] // len(t[0])) + t[2] + "\n"
    )


def spliced() -> st.SearchStrategy[str]:
    """A real manifest with random YAML-ish text inserted at a random place."""
    return st.tuples(st.sampled_from(MANIFESTS), yaml_soup(), st.floats(0, 1)).map(
        lambda t: t[0][: int(len(t[0]) * t[2])] + t[1] + t[0][int(len(t[0]) * t[2]) :]
    )


def check(data: bytes) -> None:
    """Load and validate `data`: nothing raises, every problem names the file and a line."""
    loaded = load_bytes(data, "f.yaml")
    for problem in loaded.problems:
        assert problem.file == "f.yaml" and problem.line >= 1 and problem.column >= 1, problem
    result = validate_documents([("f.yaml", data), ("g.yaml", MANIFESTS[0].encode())], default_schemas())
    for problem in result.problems:
        assert problem.file in ("f.yaml", "g.yaml") and problem.line >= 1, problem
        assert problem.rule != "file.check-failed", problem  # the safety net caught an exception: a bug


def event_depth(text: str) -> int | None:
    """The deepest nesting libyaml's (iterative) event parser reports, or None for a syntax error."""
    parser = _Parser(text)
    depth = deepest = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, CollectionStartEvent):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            elif isinstance(event, DocumentEndEvent):
                depth = 0
    except YAMLError:
        return deepest
    return deepest


@FUZZ
@given(yaml_soup())
def test_yaml_soup_never_raises(text):
    """Random sequences of YAML tokens load and validate without raising, every problem located."""
    check(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(nested())
def test_random_block_and_flow_nesting_never_raises(text):
    """Random trees of block and flow collections load and validate without raising."""
    check(text.encode())


@FUZZ
@given(deep())
def test_deep_nesting_of_any_construct_never_raises(text):
    """Chains of nesting openers, up to tens of thousands deep, load and validate without raising."""
    check(text.encode())


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data):
    """Arbitrary bytes load and validate without raising."""
    check(data)


@FUZZ
@given(spliced())
def test_manifests_with_random_text_spliced_in_never_raise(text):
    """Real manifests with random YAML-ish text spliced in validate without raising, every problem located."""
    check(text.encode())


@FUZZ
@given(st.one_of(yaml_soup(), nested(), spliced(), deep().filter(lambda t: len(t) < 3000)))
def test_the_depth_bound_is_never_below_the_real_depth(text):
    """`depth_bound`, which decides whether the event scan runs, is at least the depth libyaml reaches."""
    depth = event_depth(text)
    assert depth is None or depth <= depth_bound(text), (depth, depth_bound(text))


@FUZZ
@given(st.one_of(yaml_soup(), nested(), deep().filter(lambda t: len(t) < 3000)), st.integers(0, 200))
def test_the_quick_gate_agrees_with_the_depth_bound(text, depth):
    """`may_nest_deeper` (one regex search) answers exactly whether `depth_bound` exceeds the depth."""
    assert may_nest_deeper(text, depth) == (depth_bound(text) > depth)
