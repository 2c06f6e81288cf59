"""The project's import structure, read from the source with ``ast`` (nothing is imported).

The core (``tacoord/``) imports nothing from ``services/`` or ``infra/``; the
project's own modules (tacoord, services, infra) import each other without a
circle. Imports inside functions count as much as those at the top of a
module: they only run later.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("tacoord", "services", "infra")
CORE_MAY_NOT_IMPORT = ("services", "infra")

# Circles known and being removed (none now); the test fails on an entry that is no longer a circle.
KNOWN_CIRCLES_TO_REMOVE = set()


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _is_main_guard(node):
    """``if __name__ == "__main__":`` — what it imports runs only when the file is the program itself."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _dynamic_target(call):
    """The (leading, constant part of the) module named by ``importlib.import_module(...)`` or ``__import__(...)``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return arg.values[0].value.rstrip(".") or None  # f"services.{name}.service" -> "services"
    return None


def imports(name, include_main=True):
    """Every module ``name`` imports: (target, line, dynamic). ``from a import b`` targets ``a.b`` if a module."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node):
        if not include_main and _is_main_guard(node):
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target if target in MODULES else base, node.lineno, False))
        elif isinstance(node, ast.Call):
            target = _dynamic_target(node)
            if target:
                found.append((target, node.lineno, True))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def test_the_module_list_covers_the_project():
    assert {"tacoord.cli", "tacoord.envelope", "services", "services.cli", "services.run",
            "services.matching.restore", "infra.stack"} <= set(MODULES)


def test_no_module_of_the_core_imports_services_or_infra():
    offending = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
                 for name in MODULES if name.split(".")[0] == "tacoord"
                 for target, line, _ in imports(name)
                 if target.split(".")[0] in CORE_MAY_NOT_IMPORT]
    assert not offending, "the core must not import services or infra:\n" + "\n".join(offending)


def test_the_import_reader_sees_every_kind_of_import(tmp_path, monkeypatch):
    source = ('import services.needs\nfrom infra import stack\n'
              'def later():\n    from services.supply import iati\n'
              '    importlib.import_module(f"services.{x}.service")\n'
              'if __name__ == "__main__":\n    import infra.demo\n')
    (tmp_path / "probe.py").write_text(source)
    monkeypatch.setitem(MODULES, "tacoord.probe", tmp_path / "probe.py")
    assert [(t, line) for t, line, _ in imports("tacoord.probe")] == [
        ("services.needs", 1), ("infra.stack", 2), ("services.supply.iati", 4), ("services", 5), ("infra.demo", 7)]
    assert "infra.demo" not in {t for t, _, _ in imports("tacoord.probe", include_main=False)}


def graph():
    """Module -> the project modules it imports (and the packages they live in, whose ``__init__`` runs first)."""
    edges = {}
    for name in MODULES:
        targets = set()
        for target, _, dynamic in imports(name, include_main=False):
            if dynamic:
                continue  # a name computed at run time (services/__init__.py's list): no static edge
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)
        targets |= {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))} & set(MODULES)
        edges[name] = targets - {name}
    return edges


def circles(edges):
    """The strongly connected components of more than one module (Tarjan), as frozensets."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return set(found)


def test_the_circle_finder_finds_a_circle_through_a_function_level_import():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert circles({"a": {"b"}, "b": set()}) == set()


def test_no_import_circle_among_the_projects_modules():
    found = circles(graph())
    new = sorted(sorted(c) for c in found - KNOWN_CIRCLES_TO_REMOVE)
    gone = sorted(sorted(c) for c in KNOWN_CIRCLES_TO_REMOVE - found)
    assert not new, f"import circles: {new}"
    assert not gone, f"no longer circles, remove them from KNOWN_CIRCLES_TO_REMOVE: {gone}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("tacoord.")))
def test_every_core_module_is_in_the_architecture_table(name):
    table = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    row = f"| `{name.removeprefix('tacoord.').replace('.', '/')}.py` |"
    assert row in table, f"{name} has no row in docs/architecture.md's table of the core"
