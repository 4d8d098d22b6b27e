"""The package's layout: modules import each other in one direction, and only each other's public names."""

import ast
import re

from .conftest import REPO


def module_imports(root=REPO / "seqreg_hf"):
    """{module: {(imported module, name or None)}} for every import of a seqreg_hf module, lazy ones included."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                if base.split(".")[0] in ("seqreg_hf", "seqreg_hf_cli"):
                    found |= {(base, alias.name) for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {(alias.name, None) for alias in node.names if alias.name.startswith("seqreg_hf")}
        modules[name] = found
    return modules


def import_graph(modules):
    graph = {}
    for name, imports in modules.items():
        targets = set()
        for base, imported in imports:
            target = f"{base}.{imported}" if imported and f"{base}.{imported}" in modules else base
            if target != name and target in modules:
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    modules = module_imports()
    # The console script is outside the package; a module of the package that imports it closes a circle.
    assert not [m for m, imports in modules.items() if any(base == "seqreg_hf_cli" for base, _ in imports)
                if m != "seqreg_hf.cli"]
    assert find_cycle(import_graph(modules)) is None, find_cycle(import_graph(modules))


def test_every_imported_module_of_the_package_exists():
    """A lazy import of a module that was renamed fails only when its line runs (an error path, often): found here."""
    modules = module_imports()
    known = set(modules) | {"seqreg_hf_cli"}
    missing = sorted({(m, base) for m, imports in modules.items() for base, name in imports if base not in known
                      and not (name and f"{base}.{name}" in known)})
    assert missing == []


def test_the_cycle_finder_finds_a_cycle():  # the check above can fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def private_imports(modules):
    return sorted((m, f"{base}.{name}") for m, imports in modules.items() for base, name in imports
                  if name and name.startswith("_") and not name.startswith("__") and base != m)


def private_uses(root=REPO / "seqreg_hf"):
    """`other._name` where `other` is a seqreg_hf module imported by this one, or where `_name` is a private function
    or method that only another module defines (`model._label_stats(...)` from outside modeling_seqreg.py)."""
    found, trees = [], {path: ast.parse(path.read_text()) for path in sorted(root.rglob("*.py"))}
    defined = {path: {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("_")}
               for path, tree in trees.items()}
    for path, tree in trees.items():
        elsewhere = set().union(*(names for other, names in defined.items() if other != path)) - defined[path]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in elsewhere and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.name}: .{node.attr}")
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and
                   (n.level or (n.module or "").startswith("seqreg_hf")) for a in n.names if a.name[0].islower()}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                found.append(f"{path.name}: {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names():
    assert private_imports(module_imports()) == []
    assert private_uses() == []


def test_the_private_name_checks_can_fail(tmp_path):
    package = tmp_path / "seqreg_hf"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def _helper():\n    pass\n\n\nclass A:\n    def _scores(self):\n        pass\n")
    (package / "b.py").write_text("from .a import _helper\nfrom . import a\n\nx = a._helper\ny = a.A()._scores()\n")
    assert private_imports(module_imports(package)) == [("seqreg_hf.b", "seqreg_hf.a._helper")]
    assert sorted(set(private_uses(package))) == ["b.py: ._helper", "b.py: ._scores", "b.py: a._helper"]
    assert find_cycle(import_graph(module_imports(package))) is None


def test_the_console_script_imports_no_heavy_module_at_start():
    source = (REPO / "seqreg_hf_cli.py").read_text()
    top = [n for n in ast.parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top for a in n.names} | {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"torch", "transformers", "seqreg_hf", "datasets"}, names


def _package_trees():
    for path in sorted((REPO / "seqreg_hf").rglob("*.py")):
        yield path, ast.parse(path.read_text())


def test_contracts_are_defined_once():
    padding, rnn_maps, bucketing = [], [], []
    length_batching = re.compile(r"length.*batch|batch.*length")
    for path, tree in _package_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "padding_side"
                                                    for t in node.targets):
                padding.append(path.name)
            if isinstance(node, ast.keyword) and node.arg == "padding_side":
                padding.append(path.name)
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "lstm" for k in node.keys):
                rnn_maps.append(path.name)
            if isinstance(node, ast.FunctionDef) and length_batching.search(node.name):
                bucketing.append(f"{path.name}:{node.name}")
    assert padding == ["tokenization.py"]
    assert rnn_maps == ["modeling_seqreg.py"]
    assert bucketing == ["data.py:exact_length_batches"]


def test_training_main_reads_top_to_bottom_and_dead_code_is_gone():
    source = (REPO / "seqreg_hf" / "training.py").read_text()
    assert len(source.splitlines()) <= 160
    assert "EMOBANK_URL" not in source and "urllib" not in "".join(p.read_text() for p, _ in _package_trees())
    tree = ast.parse(source)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    assert not names & {"ModelArguments", "DataArguments", "LengthBucketBatchSampler", "write_outputs"}
    modules = {p.stem for p in (REPO / "seqreg_hf").glob("*.py")}
    assert {"arguments", "data", "trainer", "run_dir", "training"} <= modules and "sampling" not in modules
    classes = {n.name for p, t in _package_trees() if p.name == "modeling_seqreg.py" for n in t.body
               if isinstance(n, ast.ClassDef)}
    assert "SeqRegEnsemble" in classes




def test_tests_mirror_modules():
    """tests/test_<module>[_<topic>].py for a module of seqreg_hf (`cli`: the console script) or of scripts/, or
    test_e2e_<topic>.py (end to end, across modules) and test_package_<topic>.py (the package as a whole)."""
    modules = {p.stem for p in (REPO / "seqreg_hf").rglob("*.py") if p.stem != "__init__"} | {"metrics"}
    scripts = {f"scripts_{p.stem}" for p in (REPO / "scripts").rglob("*.py") if p.stem != "__init__"}
    stray = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        stem = path.stem.removeprefix("test_")
        if not (stem.startswith(("e2e_", "package_")) or any(stem == m or stem.startswith(f"{m}_")
                                                                for m in modules | scripts)):
            stray.append(path.name)
    assert stray == []


def test_the_readme_module_map_names_every_module():
    """Each module of seqreg_hf/ (and each subpackage) has a row in README's "Architecture: the module map" table."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Architecture: the module map", 1)[1]
    table = "\n".join(line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("| `"))
    named = {name for cell in (line.split(" | ")[0] for line in table.splitlines())
             for name in re.findall(r"`([\w./]+)`", cell)}
    root = REPO / "seqreg_hf"
    modules = {p.name for p in root.glob("*.py") if p.name != "__init__.py"}
    packages = {f"{p.parent.name}/" for p in root.glob("*/__init__.py")}
    assert modules | packages <= named, sorted((modules | packages) - named)
