"""No private attribute of a third-party library outside the guarded moto patches (DESIGN.md §5).

A library's `_name` is not part of its API: it changes in any release, so using it turns a version bump into an
investigation. The one exception is the local harness's guarded moto patches, each naming the moto behaviour it
works around. The scan is a practical approximation, by `ast`, of "a private name reached through a third-party
import": `from lib import _x`, `import lib._x`, `lib._x` and `obj._x` where `obj` came from a third-party import (or a
call, attribute or annotation rooted at one), `getattr(obj, "_x")` and its kin, dotted strings such as
`"lib.mod._x"` (patch targets), and `self._x` / `super()._x` in a subclass of a third-party class when our class never
sets `_x` itself. Our own private names (`self._x` of our classes, `_x` of our modules) are ours to use.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["app.py", "functions", "infra", "local", "bench", "tests"]
# functions/ is the Lambda asset root: its packages import as top-level names.
FIRST_PARTY = {"shared", "chat", "batch", "infra", "local", "bench", "tests", "app"}
# The guarded moto patches.
GUARDED_MOTO_PATCHES = {"local/moto_patches.py"}
# The guard's own tests: each moves one patched moto internal (monkeypatch) to prove the guard reports it, or checks
# that the patch is in place. Only these names, only there.
_GUARD_TEST_NAMES = {"_from_boto_response", "_wait_interval", "_eval_body", "_normalise_parameters"}
GUARD_TESTS = {"tests/functional/test_moto_patches.py": _GUARD_TEST_NAMES}
ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr", "object"}
# What an `import_module("<third-party module>")` expression counts as rooted at.
THIRD_PARTY = "<third-party module>"
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _third_party(module: str | None, level: int = 0) -> bool:
    if level or not module:
        return False
    top = module.split(".")[0]
    return top not in FIRST_PARTY and top not in sys.stdlib_module_names and top != "__future__"


@functools.cache
def _installed_third_party(name: str) -> bool:
    """A top-level module name of an installed third-party distribution (found, not imported)."""
    return _third_party(name) and importlib.util.find_spec(name) is not None


def _annotation_roots(node: ast.expr | None) -> Iterator[str]:
    """The names an annotation is built from (`Foo`, `Foo | None`, `Optional[Foo]`)."""
    if node is None:
        return
    for part in ast.walk(node):
        if isinstance(part, ast.Name):
            yield part.id


class _Scan:
    def __init__(self, tree: ast.Module) -> None:
        self.nodes = list(ast.walk(tree))
        # Module-level string constants, for `import_module(_MODULE)`.
        self.strings = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        self.third_party = self._third_party_names()
        self.found: list[tuple[int, str, str]] = []

    def _root(self, node: ast.expr) -> str | None:
        """The name an expression starts from: `a` of `a.b(c)[d].e`; `import_module("lib.mod")` counts as `lib`."""
        while True:
            match node:
                case ast.Name(id=name):
                    return name
                case ast.Call(func=ast.Name(id="import_module" | "__import__") | ast.Attribute(attr="import_module")):
                    return self._imported(node.args[0]) if node.args else None
                case ast.Attribute(value=inner) | ast.Subscript(value=inner) | ast.Await(value=inner):
                    node = inner
                case ast.Call(func=inner):
                    node = inner
                case _:
                    return None

    def _imported(self, module: ast.expr) -> str | None:
        """THIRD_PARTY for `import_module` of a third-party module named by a literal or a module-level constant."""
        name = module.value if isinstance(module, ast.Constant) else self.strings.get(getattr(module, "id", ""))
        return THIRD_PARTY if isinstance(name, str) and _third_party(name) else None

    def _third_party_names(self) -> set[str]:
        """Names bound by a third-party import, then (to a fixed point) names bound from those."""
        names = {THIRD_PARTY}
        for node in self.nodes:
            if isinstance(node, ast.Import):
                names |= {alias.asname or alias.name.split(".")[0] for alias in node.names if _third_party(alias.name)}
            elif isinstance(node, ast.ImportFrom) and _third_party(node.module, node.level):
                names |= {alias.asname or alias.name for alias in node.names}
        bindings = [binding for node in self.nodes for binding in _bindings(node)]
        bindings += [
            (node.arg, ast.Name(root))
            for node in self.nodes
            if isinstance(node, ast.arg)
            for root in _annotation_roots(node.annotation)
        ]
        while True:
            before = len(names)
            names |= {target for target, value in bindings if self._root(value) in names}
            if len(names) == before:
                return names

    def run(self) -> list[tuple[int, str, str]]:
        for node in self.nodes:
            self._imports(node)
            self._attributes(node)
            self._calls(node)
            self._strings(node)
            if isinstance(node, ast.ClassDef):
                self._subclass(node)
        return sorted(set(self.found))

    def _flag(self, node: ast.AST, names: list[str], what: str) -> None:
        for name in filter(_private, names):
            self.found.append((getattr(node, "lineno", 0), name, what))

    def _imports(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _third_party(alias.name) and any(map(_private, alias.name.split("."))):
                    self._flag(node, alias.name.split("."), f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and _third_party(node.module, node.level):
            assert node.module is not None
            for alias in node.names:
                if any(map(_private, [*node.module.split("."), alias.name])):
                    self._flag(node, [*node.module.split("."), alias.name], f"from {node.module} import {alias.name}")

    def _attributes(self, node: ast.AST) -> None:
        if isinstance(node, ast.Attribute) and _private(node.attr) and self._root(node.value) in self.third_party:
            self._flag(node, [node.attr], ast.unparse(node))

    def _calls(self, node: ast.AST) -> None:
        """getattr(obj, "_x"), setattr/hasattr/delattr, monkeypatch.setattr(obj, "_x", ...), patch.object(obj, "_x")."""
        if not isinstance(node, ast.Call) or len(node.args) < 2:
            return
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        target, attribute = node.args[0], node.args[1]
        if (
            name in ATTRIBUTE_FUNCTIONS
            and isinstance(attribute, ast.Constant)
            and isinstance(attribute.value, str)
            and _private(attribute.value)
            and self._root(target) in self.third_party
        ):
            self._flag(node, [attribute.value], f"{name}({ast.unparse(target)}, {attribute.value!r})")

    def _strings(self, node: ast.AST) -> None:
        """A dotted path into a third-party module with a private part (mock.patch / monkeypatch.setattr targets)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
            parts = node.value.split(".")
            if any(map(_private, parts[1:])) and _installed_third_party(parts[0]):
                self._flag(node, parts[1:], repr(node.value))

    def _subclass(self, node: ast.ClassDef) -> None:
        """In a subclass of a third-party class, `self._x` / `super()._x` that our class never defines or sets."""
        if not any(self._root(base) in self.third_party for base in node.bases):
            return
        ours = {
            item.name for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        for part in ast.walk(node):
            for target, _ in _bindings(part):
                ours.add(target)
            if isinstance(part, ast.Attribute) and isinstance(part.ctx, ast.Store | ast.Del):
                ours.add(part.attr)
        for part in ast.walk(node):
            if not isinstance(part, ast.Attribute) or not _private(part.attr):
                continue
            inherited = isinstance(part.value, ast.Name) and part.value.id in {"self", "cls"} and part.attr not in ours
            via_super = isinstance(part.value, ast.Call) and self._root(part.value) == "super"
            if inherited or via_super:
                self._flag(part, [part.attr], f"{ast.unparse(part)} (inherited from a third-party class)")


def _bindings(node: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """(name, value) of `name = value`, `name: T = value`, `with value as name`, `for name in value`, `name := v`."""
    match node:
        case ast.Assign(targets=targets, value=value):
            yield from ((target.id, value) for target in targets if isinstance(target, ast.Name))
        case ast.AnnAssign(target=ast.Name(id=name), annotation=annotation, value=value):
            if value is not None:
                yield name, value
            yield from ((name, ast.Name(root)) for root in _annotation_roots(annotation))
        case ast.With(items=items) | ast.AsyncWith(items=items):
            yield from (
                (item.optional_vars.id, item.context_expr) for item in items if isinstance(item.optional_vars, ast.Name)
            )
        case ast.For(target=ast.Name(id=name), iter=value) | ast.AsyncFor(target=ast.Name(id=name), iter=value):
            yield name, value
        case ast.NamedExpr(target=ast.Name(id=name), value=value):
            yield name, value


def private_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, private name, expression) of every private third-party name the source reaches."""
    return _Scan(ast.parse(source)).run()


def _project_files() -> Iterator[Path]:
    for entry in SCANNED:
        path = ROOT / entry
        if path.is_file():
            yield path
        else:
            yield from (file for file in sorted(path.rglob("*.py")) if "__pycache__" not in file.parts)


def test_no_private_third_party_attribute_outside_the_guarded_moto_patches() -> None:
    found = [
        f"{relative}:{line}: {what}"
        for file in _project_files()
        if (relative := file.relative_to(ROOT).as_posix()) not in GUARDED_MOTO_PATCHES
        for line, name, what in private_uses(file.read_text(encoding="utf-8"))
        if name not in GUARD_TESTS.get(relative, set())
    ]
    assert found == []


def test_the_scan_covers_the_project() -> None:
    files = [file.relative_to(ROOT).as_posix() for file in _project_files()]
    assert {"app.py", "tests/test_no_private_apis.py"} <= set(files)
    for folder in SCANNED[1:]:
        assert any(file.startswith(f"{folder}/") for file in files), folder


@pytest.mark.parametrize(
    "source",
    [
        "from botocore.parsers import _parse_x",
        "from pydantic._internal import _model_construction",
        "import moto.core._private",
        "import botocore\nbotocore.client._x",
        "import boto3 as b\nb.session._y",
        "from moto.core import BaseBackend\nBaseBackend._url_module",
        "import boto3\nclient = boto3.client('s3')\nclient._endpoint.host",
        "from aws_lambda_powertools import Logger\ndef f(logger: Logger) -> None:\n    logger._logger",
        "from aws_lambda_powertools import Metrics\nm: Metrics | None = None\nm._x",
        "import moto\ngetattr(moto.backends, '_x')",
        "import botocore\nmonkeypatch.setattr(botocore.client, '_x', 1)",
        "import botocore\nmock.patch('botocore.client._x')",
        "monkeypatch.setattr('moto.core.models._x', None)",
        "from aws_lambda_powertools import Metrics\nclass M(Metrics):\n    def f(self):\n        return self._x",
        "from starlette.responses import Response\nclass R(Response):\n    def f(self):\n        super()._x()",
    ],
)
def test_the_scan_finds_a_private_third_party_name(source: str) -> None:
    assert private_uses(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "self._x",
        "from chat.service import converse_gateway\nconverse_gateway.cache_clear()\nconverse_gateway._y",
        "from .records import _parse\n_parse()",
        "import os\nos._exit(0)",
        "import botocore\nbotocore.__version__",
        "import boto3\nclass A:\n    def __init__(self):\n        self._client = boto3.client('s3')",
        "from starlette.responses import Response\nclass R(Response):\n    def __init__(self):\n"
        "        self._ours = 1\n    def f(self):\n        return self._ours + self._helper()\n"
        "    def _helper(self):\n        return 1",
        "logging.getLogger('botocore.credentials')",
    ],
)
def test_the_scan_leaves_our_own_private_names(source: str) -> None:
    assert private_uses(source) == []
