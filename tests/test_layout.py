"""The package's shape: the root is the public API and the entry points, every concern is a package, modules are
short, no import cycle exists (imports inside functions included), and no layer imports one above it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "czsl_models"
ARCHITECTURE_DOC = PACKAGE.parent / "docs" / "architecture.md"
MAX_MODULE_LINES = 500

# Bottom to top: a package may import only the packages listed before it (and itself). The root's public API
# (`__init__`) and the entry points (`cli`, `__main__`) sit on top of everything.
LAYERS = ("inputs", "backbones", "models", "data", "evaluation", "inference", "training", "hub", "hosting", "ui")
ROOT_MODULES = {"__init__.py", "__main__.py", "cli.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` imports never run; they name types only."""
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, name: str | None = None) -> set[str]:
    """Every czsl_models module a file imports, at module level or inside functions (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block) for n in ast.walk(block)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("czsl_models"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("czsl_models"))
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {t for t in _imports(path) if t in MODULES and t != name} for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "root"


def test_the_root_holds_the_public_api_and_the_entry_points():
    root_files = {p.name for p in PACKAGE.glob("*.py")}
    assert root_files == ROOT_MODULES
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def test_the_public_api_imports_what_the_readme_uses():
    import czsl_models

    for name in ("load_model", "Vocabulary", "CompositionModel", "Prediction", "list_models", "load_image",
                 "get_backbone", "CheckpointError"):
        assert name in czsl_models.__all__ and hasattr(czsl_models, name), name
    readme = (PACKAGE.parent / "README.md").read_text()
    for statement in re.findall(r"^from czsl_models[\w.]* import [^\n]+", readme, flags=re.M):
        exec(statement, {})  # noqa: S102 - the README's own import lines must run


def test_no_module_is_too_long():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_imports_form_no_cycle_even_inside_functions():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name)


def test_no_layer_imports_a_layer_above_it():
    order = {layer: rank for rank, layer in enumerate(LAYERS)} | {"root": len(LAYERS)}
    upward = sorted(f"{source} -> {target}" for source, targets in GRAPH.items() for target in targets
                    if order[_layer(target)] > order[_layer(source)])
    assert not upward, "imports into a higher layer:\n" + "\n".join(upward)


def test_the_cycle_check_would_see_an_import_inside_a_function(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def late():\n    from czsl_models.ui import blocks\n\nif TYPE_CHECKING:\n"
                      "    from czsl_models.hub import publish\n")
    found = _imports(source, "czsl_models.models.probe")
    assert "czsl_models.ui.blocks" in found and "czsl_models.hub.publish" not in found


@pytest.mark.parametrize("layer", LAYERS)
def test_the_architecture_doc_describes_every_layer(layer):
    text = ARCHITECTURE_DOC.read_text()
    assert re.search(rf"^\| `{layer}/` \|", text, flags=re.M), f"docs/architecture.md has no row for {layer}/"
