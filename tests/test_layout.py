"""The package layout: the import graph has no cycles and points down the pipeline, nothing imports the package
root, and a long module says why it is long. Run as a script to print the graph: ``python tests/test_layout.py``."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "nerkit"
MAX_LINES = 400
# Pipeline stages, lowest first: a module may import its own stage or lower ones, never a higher one.
STAGES = [
    {"nerkit._version", "nerkit.errors", "nerkit.types", "nerkit.scheme", "nerkit.files", "nerkit.words", "nerkit.iob", "nerkit.spans", "nerkit.layers",
     "nerkit.hf_pipeline_code"},  # the word splitter, IOB2 decoding; the pipeline code copied into model dirs
    {"nerkit.data"},
    {"nerkit.formats"},  # the I/O layer: every format read and written, ``formats.load`` for train and the CLI
    {"nerkit.align", "nerkit.modeldir", "nerkit.hf_pipeline"},
    {"nerkit.engines", "nerkit.decode"},
    {"nerkit.budget", "nerkit.transfer", "nerkit.checkpoint", "nerkit.loop"},  # budget rule, head transfer, checkpoints: used by train
    {"nerkit.evaluation"},  # entity scores of a tagger on documents
    {"nerkit.report"},  # an evaluation as people read it: every error in its sentence, an HTML page
    {"nerkit.train"},  # train scores dev data with evaluation
    {"nerkit.search", "nerkit.curve"},  # several trainings: around the derived budget (dev-best kept), on growing subsets
    {"nerkit.predict"},
    {"nerkit.export"},
    # both run a Tagger over texts: HTTP requests (the batcher and middleware in serving), corpus files (local or Ray)
    {"nerkit.serve", "nerkit.serving", "nerkit.tagcorpus", "nerkit.tagcorpus_ray"},
    {"nerkit.distill"},  # a smaller model from a trained one: training's steps, on tag-corpus's readers too
    {"nerkit.demo"},
    {"nerkit.annotate"},  # beside the pipeline: it uses the pipeline, the pipeline never uses it
    {"nerkit.cli"},
]
NOT_FROM_TRAIN = {"nerkit.predict", "nerkit.export", "nerkit.serve"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def imports(path: Path, known: set[str]) -> tuple[set[str], list[str]]:
    """The nerkit modules a file imports (anywhere in it, lazy imports included), and its imports of the root."""
    found, root = set(), []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "nerkit":
                    root.append(f"line {node.lineno}: import nerkit")
                elif a.name.startswith("nerkit."):
                    found.add(a.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "nerkit":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in known:
                    found.add(sub)  # a submodule: `from nerkit import data`
                elif node.module == "nerkit":
                    root.append(f"line {node.lineno}: from nerkit import {a.name}")
                else:
                    found.add(node.module)
    return found, root


def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Import edges between nerkit modules, and every import of the package root."""
    mods = modules()
    edges, roots = {}, {}
    for name, path in mods.items():
        edges[name], r = imports(path, set(mods))
        edges[name].discard(name)
        if r and name != "nerkit":
            roots[name] = r
    return edges, roots


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def stage(name: str) -> int | None:
    """The pipeline stage of a module (a subpackage's modules share its stage); None for the package root."""
    for i, group in enumerate(STAGES):
        if any(name == g or name.startswith(g + ".") for g in group):
            return i
    return None


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports that point up the pipeline."""
    bad = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            sa, sb = stage(a), stage(b)
            if sa is not None and sb is not None and sb > sa:
                bad.append(f"{a} -> {b}")
    return bad


def test_every_module_has_a_stage():
    assert [m for m in modules() if m != "nerkit" and stage(m) is None] == []


def test_import_graph_has_no_cycles():
    edges, _ = graph()
    assert edges["nerkit.train"], "the graph reader found no imports at all"
    assert cycles(edges) == []


def test_imports_point_down_the_pipeline():
    edges, _ = graph()
    assert upward(edges) == []
    assert edges["nerkit.train"] & NOT_FROM_TRAIN == set()


def test_nothing_imports_the_package_root():
    _, roots = graph()
    assert roots == {}


def test_the_checks_catch_what_they_check(tmp_path):
    """The helpers above flag a cycle, an upward arrow and a root import when there is one."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert upward({"nerkit.train": {"nerkit.predict", "nerkit.data"}}) == ["nerkit.train -> nerkit.predict"]
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from nerkit import Tagger\n    from nerkit import data\n    import nerkit.train\n")
    found, root = imports(f, {"nerkit.data", "nerkit.train"})
    assert found == {"nerkit.data", "nerkit.train"} and root == ["line 2: from nerkit import Tagger"]


def test_long_modules_say_why():
    long = []
    for name, path in modules().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(line.startswith("# size:") for line in lines[:40]):
            long.append(f"{name} ({len(lines)} lines)")
    assert long == [], f"over {MAX_LINES} lines without a '# size:' reason near the top"


if __name__ == "__main__":
    edges, roots = graph()
    for a in sorted(edges):
        print(f"{a} -> {', '.join(sorted(edges[a])) or '-'}")
    print("cycles:", cycles(edges) or "none")
    print("upward imports:", upward(edges) or "none")
    print("imports of the package root:", roots or "none")
    sys.exit(1 if cycles(edges) or upward(edges) or roots else 0)


def test_root_exports_are_the_functions():
    import subprocess
    import sys

    code = ("import nerkit, sys; first = nerkit.evaluate; import nerkit.evaluation; "
            "assert callable(nerkit.evaluate) and nerkit.evaluate is first is nerkit.evaluation.evaluate; "
            "from nerkit import evaluate, fit; assert callable(evaluate) and callable(fit)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # a fresh interpreter: no module loaded yet
    assert r.returncode == 0, r.stderr


ROOT = PKG.parent
PENDING_DOCS: set[str] = set()  # docs linked before they are written (none now)


def test_readme_is_the_newcomers_path_and_its_links_resolve():
    """Under 150 lines, starting with the two commands CI runs (.ci/run); every relative link of the README and of
    docs/ names a file that exists (and a heading of it, given an anchor)."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 150
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert "pip install torch==2.13.0 -e '.[all]' && nerkit demo" in blocks[0]
    assert "python -m pytest -q" in blocks[1]

    def anchors(path: Path) -> set[str]:
        heads = [line.lstrip("#").strip().lower() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.startswith("#")]
        return {re.sub(r"[^\w\- ]", "", h).replace(" ", "-") for h in heads}

    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#\s:]*)(?:#([^)\s]+))?\)", doc.read_text(encoding="utf-8")):
            path = (doc.parent / target).resolve() if target else doc
            if str(path.relative_to(ROOT)) in PENDING_DOCS:
                continue
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
                broken.append(f"{doc.name}: {target}#{anchor}")
    assert broken == []


def floors(edges: dict[str, set[str]]) -> int:
    """The longest import chain between the package's parts (a subpackage counts as one part): how many floors a
    drawing of the structure needs."""
    from functools import lru_cache

    def part(m: str) -> str:
        return ".".join(m.split(".")[:2])

    parts: dict[str, set[str]] = {}
    for a, targets in edges.items():
        parts.setdefault(part(a), set()).update(part(b) for b in targets if part(b) != part(a))

    @lru_cache(None)
    def depth(m: str) -> int:
        return 1 + max((depth(t) for t in parts.get(m, ())), default=0)

    return max(depth(m) for m in parts)


def test_the_structure_has_at_most_nine_floors():
    edges, _ = graph()
    assert floors({"nerkit.a": {"nerkit.b.x"}, "nerkit.b.x": {"nerkit.b.y"}, "nerkit.b.y": {"nerkit.c"}}) == 3
    assert floors(edges) <= 9


def test_no_function_is_over_80_lines():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
