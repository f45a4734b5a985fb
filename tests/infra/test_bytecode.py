"""Bytecode in the Lambda assets: compiled by the runtime's Python when this machine has it, else a loud warning.

There is no Python 3.14 here, so the mechanism is proven with the interpreter running the tests: the target version
is set to its own (3.11) and the layer's build, the functions' staged asset and a fresh interpreter's imports are
checked against what a 3.14 build would give with `cpython-314` in the names. The layer's install step is replaced
by a copy of one small pure-Python package (jmespath, which the real layer also ships): the real install is ~50 MB
of aarch64 wheels that a machine of another architecture could not import anyway.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk.assertions import Annotations, Match

from infra import bytecode, layer
from infra.config import DeploymentConfig
from infra.constructs import python_function as factory
from tests.infra.synth import Synthesized

RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
RUNNING_TAG = sys.implementation.cache_tag  # cpython-311 here; cpython-314 for the Lambda runtime
# PEP 552: the pyc header's second word; bit 0 = hash-based, bit 1 = check the source. Unchecked-hash is 0b01.
UNCHECKED_HASH_FLAGS = 0b01
_JMESPATH = importlib.util.find_spec("jmespath")
assert _JMESPATH is not None and _JMESPATH.origin is not None
THIRD_PARTY = Path(_JMESPATH.origin).parent
# What the child imports: the chat function's app (our chat and shared packages) and the layer's sample package.
IMPORTS = ("chat.app", "batch.prepare", "jmespath")
# What must then come from the two roots (a few of them).
LOADED = {"chat.app", "chat.service", "shared.converse", "batch.prepare", "jmespath", "jmespath.parser"}


@pytest.fixture(autouse=True)
def _fresh_lookup() -> Iterator[None]:
    """The interpreter lookup is cached per process: every test starts and ends with an empty cache."""
    bytecode._lookup.cache_clear()
    yield
    bytecode._lookup.cache_clear()


@dataclass
class FakeBuild:
    """.build/ in a temporary folder; the layer's install step copies jmespath and records each call."""

    folder: Path
    installs: list[Path] = field(default_factory=list)

    def install(self, uv: str, python_dir: Path) -> None:
        self.installs.append(python_dir)
        shutil.copytree(THIRD_PARTY, python_dir / "jmespath", ignore=shutil.ignore_patterns("__pycache__"))
        # A wheel may ship bytecode of another interpreter: the build drops every __pycache__ it installed.
        (python_dir / "jmespath" / "__pycache__").mkdir()
        (python_dir / "jmespath" / "__pycache__" / "stale.cpython-39.pyc").write_bytes(b"stale")


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    fake = FakeBuild(tmp_path / "build")
    monkeypatch.setattr(layer, "BUILD_DIR", fake.folder)
    monkeypatch.setattr(factory, "BUILD_DIR", fake.folder)
    monkeypatch.setattr(layer, "install_runtime_group", fake.install)
    monkeypatch.setattr(bytecode, "uv_executable", lambda: "uv")
    return fake


@pytest.fixture
def compiling(monkeypatch: pytest.MonkeyPatch) -> bytecode.Interpreter:
    """The target version set to this interpreter's, which is the one compiling (via GPTOSS_LAMBDA_PYTHON)."""
    monkeypatch.setattr(bytecode, "LAMBDA_PYTHON", RUNNING)
    monkeypatch.setenv(bytecode.OVERRIDE_VARIABLE, sys.executable)
    interpreter = bytecode.lambda_interpreter()
    assert interpreter is not None
    return interpreter


@pytest.fixture
def not_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """No interpreter of the target version: no override, and uv finds none."""
    monkeypatch.delenv(bytecode.OVERRIDE_VARIABLE, raising=False)
    monkeypatch.setattr(bytecode, "find_with_uv", lambda version: None)
    assert bytecode.lambda_interpreter() is None


def pyc_flags(path: Path) -> int:
    """The flags word of a pyc header (bytes 4..8, little-endian; PEP 552)."""
    return int.from_bytes(path.read_bytes()[4:8], "little")


def sources(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*.py") if "__pycache__" not in path.parts)


def assert_compiled_beside_sources(root: Path, original: Path) -> None:
    """Every source of `original` is in `root` unchanged, with an unchecked-hash pyc of this interpreter beside it."""
    assert sources(root) == sources(original)
    for relative in sources(original):
        assert (root / relative).read_bytes() == (original / relative).read_bytes()
        cached = Path(importlib.util.cache_from_source(str(root / relative)))
        assert cached.is_file(), cached
        assert pyc_flags(cached) == UNCHECKED_HASH_FLAGS, cached
        assert cached.read_bytes()[:4] == importlib.util.MAGIC_NUMBER
    # Only this interpreter's bytecode, nothing left from a wheel or this machine's own runs.
    assert {path.suffixes[-2] for path in root.rglob("*.pyc")} == {f".{RUNNING_TAG}"}


def test_the_target_version_is_the_factorys_runtime() -> None:
    assert factory.RUNTIME.name == f"python{bytecode.LAMBDA_PYTHON}"


def test_probe_accepts_only_a_final_cpython_of_the_asked_version() -> None:
    found = bytecode.probe(sys.executable, RUNNING)
    assert found is not None
    assert (found.cache_tag, found.magic) == (RUNNING_TAG, importlib.util.MAGIC_NUMBER.hex())
    assert found.version == sys.version.split()[0]
    assert bytecode.probe(sys.executable, "3.14") is None
    assert bytecode.probe("/nonexistent/python3.14", "3.14") is None


def test_the_override_must_be_the_runtimes_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bytecode.OVERRIDE_VARIABLE, sys.executable)
    with pytest.raises(RuntimeError, match=rf"{bytecode.OVERRIDE_VARIABLE}=.* is not a final CPython 3\.14"):
        bytecode.lambda_interpreter()


@pytest.mark.skipif(bytecode.uv_executable() is None, reason="uv is not on PATH")
def test_uv_finds_an_installed_interpreter_of_a_version_and_nothing_for_another() -> None:
    found = bytecode.find_with_uv(RUNNING)
    assert found is not None
    interpreter = bytecode.probe(found, RUNNING)
    assert interpreter is not None
    assert interpreter.cache_tag == RUNNING_TAG
    # Never a download: a version nobody has installed is simply not found.
    assert bytecode.find_with_uv("3.99") is None


def test_no_interpreter_without_override_and_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bytecode.OVERRIDE_VARIABLE, raising=False)
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert bytecode.find_with_uv(bytecode.LAMBDA_PYTHON) is None
    assert bytecode.lambda_interpreter() is None


def test_the_layer_ships_unchecked_hash_bytecode_beside_its_sources(
    build: FakeBuild, compiling: bytecode.Interpreter
) -> None:
    built = layer.dependency_layer_dir()
    assert built == build.folder / f"layer-{layer.layer_key(compiling)}"
    assert_compiled_beside_sources(built / "python" / "jmespath", THIRD_PARTY)
    # Built once: the next synth reuses the folder.
    assert layer.dependency_layer_dir() == built
    assert len(build.installs) == 1


def test_the_layers_cache_key_says_whether_and_with_what_it_was_compiled(compiling: bytecode.Interpreter) -> None:
    other = bytecode.Interpreter(executable="python3.14", version="3.14.0", cache_tag="cpython-314", magic="2b0e0d0a")
    keys = {layer.layer_key(None), layer.layer_key(compiling), layer.layer_key(other)}
    assert len(keys) == 3


def test_the_layer_without_an_interpreter_is_sources_only_under_its_old_key(
    build: FakeBuild, not_compiling: None
) -> None:
    built = layer.dependency_layer_dir()
    assert built == build.folder / f"layer-{layer.layer_key(None)}"
    assert sources(built / "python" / "jmespath") == sources(THIRD_PARTY)
    assert not list(built.rglob("__pycache__"))


@pytest.mark.skipif(bytecode.uv_executable() is None, reason="the layer is built with uv")
def test_one_real_layer_build_compiles_every_module_and_boto3_loads_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock file's runtime group as deployed (3.14 aarch64 wheels, from uv's cache), compiled by this interpreter.

    Only the interpreter is this one (≈ 3 s here: the install is a copy from uv's cache, compiling ≈ 2.5 s);
    the pure-Python packages (boto3, botocore, starlette, uvicorn) then import from the bytecode on this machine.
    """
    interpreter = bytecode.probe(sys.executable, RUNNING)
    assert interpreter is not None
    monkeypatch.setattr(bytecode, "lambda_interpreter", lambda: interpreter)
    monkeypatch.setattr(layer, "BUILD_DIR", tmp_path)
    python_dir = layer.dependency_layer_dir() / "python"
    every_source = sources(python_dir)
    assert len(every_source) > 500
    for relative in every_source:
        cached = Path(importlib.util.cache_from_source(str(python_dir / relative)))
        assert pyc_flags(cached) == UNCHECKED_HASH_FLAGS, cached
    child = "import boto3, starlette.applications, uvicorn.config\n"
    environment = {**os.environ, "PYTHONPATH": str(python_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-v", "-c", child], env=environment, capture_output=True, text=True, check=True
    )
    for module in ("boto3/session.py", "botocore/client.py", "starlette/applications.py", "uvicorn/config.py"):
        source = python_dir / module
        assert f"# {importlib.util.cache_from_source(str(source))} matches {source}" in done.stderr, module


def test_the_function_asset_is_a_compiled_copy_of_functions(build: FakeBuild, compiling: bytecode.Interpreter) -> None:
    copy = Path(factory.function_code().path)
    assert copy.parent == build.folder
    assert copy.name.startswith("functions-")
    assert_compiled_beside_sources(copy, factory.FUNCTIONS_DIR)
    # Every other file too (the chat function's handler script, still executable), and nothing else.
    shipped = {path.relative_to(copy) for path in copy.rglob("*") if path.is_file() and path.suffix != ".pyc"}
    assert shipped == set(bytecode._source_files(factory.FUNCTIONS_DIR))
    assert (copy / "chat" / "run.sh").stat().st_mode & stat.S_IXUSR
    # Built once per content: the next function of the synth gets the same folder.
    assert Path(factory.function_code().path) == copy


def test_the_staged_copy_changes_with_the_sources_and_the_interpreter(
    tmp_path: Path, compiling: bytecode.Interpreter
) -> None:
    source = tmp_path / "functions"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    first = bytecode.compiled_copy(source, tmp_path / "build", compiling)
    # This machine's own caches are not part of the sources.
    (source / "pkg" / "__pycache__").mkdir()
    (source / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"local")
    assert bytecode.compiled_copy(source, tmp_path / "build", compiling) == first
    (source / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    second = bytecode.compiled_copy(source, tmp_path / "build", compiling)
    other = bytecode.Interpreter(compiling.executable, compiling.version, compiling.cache_tag, magic="00000000")
    third = bytecode.compiled_copy(source, tmp_path / "build", other)
    assert len({first, second, third}) == 3
    assert not list((tmp_path / "build").glob("staging-*"))


def test_a_function_that_does_not_compile_fails_the_synth(tmp_path: Path, compiling: bytecode.Interpreter) -> None:
    source = tmp_path / "functions"
    source.mkdir()
    (source / "broken.py").write_text("def f(:\n")
    with pytest.raises(RuntimeError, match="does not compile"):
        bytecode.compiled_copy(source, tmp_path / "build", compiling)
    assert not (tmp_path / "build").exists() or not list((tmp_path / "build").iterdir())


def test_without_an_interpreter_the_asset_is_functions_itself(not_compiling: None) -> None:
    assert Path(factory.function_code().path) == factory.FUNCTIONS_DIR


def test_a_fresh_interpreter_loads_our_modules_and_the_layers_from_that_bytecode(
    build: FakeBuild, compiling: bytecode.Interpreter
) -> None:
    """`python -v` says, per module, whether its pyc "matches" or it compiled a "code object from" the source."""
    task_root = Path(factory.function_code().path)
    layer_python = layer.dependency_layer_dir() / "python"
    roots = (task_root, layer_python)
    _write_access(roots, allowed=False)  # read-only, as on Lambda (root may still write: the tree is compared too)
    try:
        before = _tree(roots)
        done = _import_in_a_fresh_interpreter(roots)
        after = _tree(roots)
    finally:
        _write_access(roots, allowed=True)
    loaded: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(loaded) >= LOADED
    for name, (source, cached) in loaded.items():
        assert cached == importlib.util.cache_from_source(source), name
        assert f"# {cached} matches {source}" in done.stderr, name
    # Nothing under either root was compiled from its source ("code object from <source>.py"; a pyc's load says
    # "code object from '<pyc>'"), and nothing was written there.
    compiled = [line for line in done.stderr.splitlines() if line.startswith("# code object from ")]
    from_source = [line for line in compiled if not line.endswith(".pyc'")]
    assert len(compiled) > len(from_source) >= 0
    assert not [line for line in from_source if any(str(root) in line for root in roots)]
    assert after == before


def _import_in_a_fresh_interpreter(roots: tuple[Path, ...]) -> subprocess.CompletedProcess[str]:
    """`python -v`: IMPORTS with the roots first on the path and no bytecode writing; modules loaded from the roots."""
    child = (
        f"import json, sys\nimport {', '.join(IMPORTS)}\n"
        "roots = tuple(sys.argv[1:])\n"
        "print(json.dumps({name: [module.__file__, module.__cached__] for name, module in list(sys.modules.items())\n"
        "    if (getattr(module, '__file__', None) or '').startswith(roots)}))\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, roots)), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-v", "-c", child, *map(str, roots)]
    return subprocess.run(command, env=environment, capture_output=True, text=True, check=True)  # noqa: S603 - ours


def _tree(roots: tuple[Path, ...]) -> list[str]:
    return sorted(str(path) for root in roots for path in root.rglob("*"))


def _write_access(roots: tuple[Path, ...], *, allowed: bool) -> None:
    for root in roots:
        for path in [root, *root.rglob("*")]:
            mode = path.stat().st_mode
            path.chmod(mode | stat.S_IWUSR if allowed else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _stack_with_two_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    fake_layer = tmp_path / "layer"
    (fake_layer / "python").mkdir(parents=True)
    monkeypatch.setattr(factory, "dependency_layer_dir", lambda: fake_layer)
    stack = Stack(App(), "Functions")
    for name in ("One", "Two"):
        factory.python_function(
            stack,
            name,
            handler="batch.prepare.lambda_handler",
            config=DeploymentConfig(),
            environment={},
            timeout=Duration.seconds(10),
        )
    return stack


def test_without_an_interpreter_the_stack_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_compiling: None
) -> None:
    stack = _stack_with_two_functions(tmp_path, monkeypatch)
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("without bytecode"))
    assert [warning.id for warning in warnings] == ["/Functions"]
    message = str(warnings[0].entry.data)
    assert f"uv python install {bytecode.LAMBDA_PYTHON}" in message
    assert bytecode.OVERRIDE_VARIABLE in message
    assert "cold start" in message


def test_with_an_interpreter_the_stack_does_not_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: FakeBuild, compiling: bytecode.Interpreter
) -> None:
    stack = _stack_with_two_functions(tmp_path, monkeypatch)
    Annotations.from_stack(stack).has_no_warning("*", Match.any_value())


def test_the_synthesized_stacks_warn_exactly_when_they_ship_no_bytecode(synthesized_apps: list[Synthesized]) -> None:
    """The shared apps synthesize as this machine does: with a runtime interpreter, or without and with a warning."""
    shipping_bytecode = bytecode.lambda_interpreter() is not None
    for synthesized in synthesized_apps:
        for stack in synthesized.app.node.children:
            if not isinstance(stack, Stack):
                continue
            warnings = [
                entry.data
                for entry in stack.node.metadata
                if entry.type == "aws:cdk:warning" and "without bytecode" in str(entry.data)
            ]
            assert len(warnings) == (0 if shipping_bytecode else 1), stack.stack_name
    assert sum(isinstance(stack, Stack) for synthesized in synthesized_apps for stack in synthesized.app.node.children)
