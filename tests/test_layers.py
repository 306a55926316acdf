"""The import rules of the code base, checked on the source with ``ast``.

The layers run one way — common (``image_service``) ← services ← frontends ← composition
root — and inside a layer the parts stay apart:

* the common package imports no service, frontend or the composition root;
* a service imports the common package and itself, never another service;
* a frontend imports the common package, ``frontends.common`` and itself: never a service and
  never another frontend; ``frontends.common`` imports no frontend;
* nothing but the composition root imports the composition root;
* inside the builder, the subpackages sit in order — foundation (``errors``, ``tools``) ←
  ``talos`` ← ``inputs`` ← ``formats`` ← the core modules — and none imports one above it;
* no first-party module reaches itself through its imports (no circles), counting imports
  under ``TYPE_CHECKING`` and inside functions too.

Every ``import`` statement counts, wherever it is. The checker also runs on small synthetic
trees so each rule is seen to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("image_service", "services", "frontends", "composition")
GENERATED = ("image_service.proto",)

BUILDER = "services.builder"
BUILDER_FOUNDATION = {f"{BUILDER}.errors", f"{BUILDER}.tools"}
# A builder subpackage may import the foundation and the subpackages listed for it.
BUILDER_SUBPACKAGES: dict[str, set[str]] = {
    f"{BUILDER}.talos": set(),
    f"{BUILDER}.inputs": {f"{BUILDER}.talos"},
    f"{BUILDER}.formats": {f"{BUILDER}.talos", f"{BUILDER}.inputs"},
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported first-party module (a module or package, never a class)
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(root, path)
            if not name.startswith(GENERATED):
                modules[name] = path
    return modules


def _resolve(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(root: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every first-party import, resolved to the module it names."""
    first_party = set(modules)
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        relative = path.relative_to(root)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, source, path.name == "__init__.py")
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in first_party else base)
            for target in targets:
                if target.split(".")[0] in PACKAGES and not target.startswith(GENERATED):
                    yield Import(source, target, relative, node.lineno)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _part(module: str) -> str:
    """The part a module belongs to: a package of the common layer, a service, a frontend."""
    top, _, rest = module.partition(".")
    if top in {"services", "frontends"} and rest:
        return f"{top}.{rest.split('.')[0]}"
    return top


def _builder_rank(module: str) -> str | None:
    """Where a builder module sits: ``foundation``, a subpackage, ``core`` or ``None``."""
    if not _within(module, BUILDER) or module == BUILDER:
        return None
    if module in BUILDER_FOUNDATION:
        return "foundation"
    for subpackage in BUILDER_SUBPACKAGES:
        if _within(module, subpackage):
            return subpackage
    return "core"


def violation(imp: Import) -> str | None:
    """Why ``imp`` breaks the rules, or ``None`` when it is allowed."""
    source, target = _part(imp.source), _part(imp.target)
    if target == "composition" and source != "composition":
        return "only the composition root may import the composition root"
    if source == "image_service" and target != "image_service":
        return "the common package imports no service, frontend or composition root"
    if source.startswith("services.") and target not in {source, "image_service"}:
        return "a service imports only itself and the common package"
    if source.startswith("frontends."):
        allowed = {source, "image_service", "frontends.common"}
        if source == "frontends.common":
            allowed = {source, "image_service"}
        if target not in allowed:
            return "a frontend imports only itself, frontends.common and the common package"
    rank, target_rank = _builder_rank(imp.source), _builder_rank(imp.target)
    if rank is not None and target_rank is not None and rank != target_rank:
        if rank == "foundation" and target_rank != "foundation":
            return "the builder foundation (errors, tools) imports nothing else of the builder"
        if rank in BUILDER_SUBPACKAGES and target_rank not in {
            "foundation",
            *BUILDER_SUBPACKAGES[rank],
        }:
            return f"{rank} may import only the builder foundation and " + (
                ", ".join(sorted(BUILDER_SUBPACKAGES[rank])) or "nothing else of the builder"
            )
    return None


def cycles(imports: Iterable[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or self-imports."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def check(root: Path) -> list[str]:
    modules = find_modules(root)
    imports = list(imports_of(root, modules))
    problems = [f"{imp}: {why}" for imp in imports if (why := violation(imp)) is not None]
    problems += [f"import circle: {' ↔ '.join(c)}" for c in cycles(imports)]
    return problems


def test_the_code_base_keeps_the_import_rules() -> None:
    assert find_modules(ROOT), "no modules found: the checker looks in the wrong place"
    problems = check(ROOT)
    assert not problems, "\n".join(problems)


def test_the_builder_layout_is_the_one_checked() -> None:
    for subpackage in BUILDER_SUBPACKAGES:
        assert (ROOT / subpackage.replace(".", "/") / "__init__.py").is_file(), subpackage
    for module in BUILDER_FOUNDATION:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


# Each case adds one import to a minimal tree and names the rule it must break.
BAD_IMPORTS = [
    ("services/builder/core.py", "from services.flavor.model import Flavor", "a service imports"),
    ("frontends/pxe/app.py", "from frontends.http.errors import rpc_error", "a frontend"),
    ("frontends/http/app.py", "import services.flavor.model", "a frontend"),
    ("frontends/common/web.py", "from frontends.http import errors", "a frontend"),
    ("image_service/settings.py", "from composition.app import serve", "composition root"),
    ("image_service/settings.py", "from services.flavor import model", "the common package"),
    ("services/flavor/model.py", "from composition import app", "composition root"),
    ("services/builder/talos/quirks.py", "from ..formats import iso", "talos may import"),
    ("services/builder/inputs/extract.py", "from services.builder import core", "inputs"),
    ("services/builder/errors.py", "from services.builder.talos import quirks", "foundation"),
    ("services/builder/formats/iso.py", "from services.builder.core import x", "formats"),
    ("services/flavor/model.py", "from services.flavor.storage import Store", "import circle"),
]

TREE = {
    "image_service/__init__.py": "",
    "image_service/settings.py": "",
    "services/__init__.py": "",
    "services/flavor/__init__.py": "",
    "services/flavor/model.py": "",
    "services/flavor/storage.py": "from services.flavor.model import Flavor\n",
    "services/builder/__init__.py": "",
    "services/builder/errors.py": "from image_service import settings\n",
    "services/builder/core.py": "from services.builder.formats.iso import build_iso\n",
    "services/builder/talos/__init__.py": "",
    "services/builder/talos/quirks.py": "from services.builder.errors import BuildFailed\n",
    "services/builder/inputs/__init__.py": "",
    "services/builder/inputs/extract.py": "from ..talos.quirks import Quirks\n",
    "services/builder/formats/__init__.py": "",
    "services/builder/formats/iso.py": "from services.builder.inputs import extract\n",
    "frontends/__init__.py": "",
    "frontends/common/__init__.py": "",
    "frontends/common/web.py": "from image_service.settings import Settings\n",
    "frontends/http/__init__.py": "",
    "frontends/http/app.py": "from frontends.common.web import text_response\n",
    "frontends/http/errors.py": "",
    "frontends/pxe/__init__.py": "",
    "frontends/pxe/app.py": "from frontends.common import web\n",
    "composition/__init__.py": "",
    "composition/app.py": "import frontends.http.app\nimport services.builder.core\n",
}


def write_tree(root: Path, extra: tuple[str, str] | None = None) -> None:
    for name, text in TREE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if extra is not None:
        name, line = extra
        path = root / name
        path.write_text(path.read_text() + f"\ndef late() -> None:\n    {line}\n")


def test_the_synthetic_tree_is_clean(tmp_path: Path) -> None:
    write_tree(tmp_path)
    assert check(tmp_path) == []


@pytest.mark.parametrize(("module", "line", "rule"), BAD_IMPORTS)
def test_a_forbidden_import_is_reported(tmp_path: Path, module: str, line: str, rule: str) -> None:
    write_tree(tmp_path, (module, line))
    problems = check(tmp_path)
    assert any(rule in problem for problem in problems), problems
    # An upward import may close a circle too; nothing else is reported.
    assert all(module in p or p.startswith("import circle") for p in problems), problems
