"""Bytecode for the Lambda runtime: whether this machine can compile it, and compiling a folder with it.

Lambda's /var/task (the functions' asset) and /opt (the dependency layer) are read-only, so a module that ships
without a `.pyc` the runtime accepts is compiled from source on every cold start and never cached. A `.pyc` is
only accepted by the interpreter version that wrote it (its magic number and its `cpython-3XX` file name), so it
must be compiled by a CPython of the runtime's exact version: LAMBDA_PYTHON (the Lambda factory's runtime). This
module is the one place that decides whether the assets ship bytecode: `lambda_interpreter()` finds such an
interpreter (GPTOSS_LAMBDA_PYTHON, else `uv python find`, which never downloads one here) or returns None, and
then the layer and the functions' asset ship their sources only, as before, and the stacks carry a warning.

The files are compiled in unchecked-hash mode (PEP 552): the `.pyc` records a hash of its source, and the import
system loads it without checking it against its source (no mtime, size or hash). Timestamp `.pyc` files (the
default) compare the source's mtime, which the asset's zip and Lambda's unpacking do not keep, and checked-hash
ones read and hash every source file at each import. The folders compiled here are never edited afterwards: each
is built once under a name that carries a digest of its inputs, so an unchecked `.pyc` cannot go stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The Lambda runtime's Python (infra/constructs/python_function.py RUNTIME): the layer's wheels and the bytecode.
LAMBDA_PYTHON = "3.14"
# An interpreter to compile with, instead of looking one up with uv (it must be CPython LAMBDA_PYTHON).
OVERRIDE_VARIABLE = "GPTOSS_LAMBDA_PYTHON"
INVALIDATION_MODE = "unchecked-hash"
# The files an asset leaves out whether or not it is compiled: this machine's own bytecode caches.
SOURCE_ONLY_EXCLUDE = ("**/__pycache__", "**/*.pyc")
# Where Lambda mounts the functions' asset and the layer's python/ folder: the file names the bytecode records.
TASK_ROOT = "/var/task"
LAYER_PYTHON_ROOT = "/opt/python"
WARNING_ID = "gpt-oss:no-bytecode"

# What the candidate interpreter reports about itself (run isolated: no PYTHON* variables, no user site).
_PROBE = (
    "import importlib.util, json, sys, sysconfig\n"
    "print(json.dumps({'implementation': sys.implementation.name, 'version': list(sys.version_info[:2]),\n"
    "    'releaselevel': sys.version_info.releaselevel, 'cache_tag': sys.implementation.cache_tag,\n"
    "    'magic': importlib.util.MAGIC_NUMBER.hex(), 'full_version': sys.version.split()[0],\n"
    "    'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED'))}))\n"
)


@dataclass(frozen=True)
class Interpreter:
    """A CPython of the runtime's version that compiles bytecode the runtime loads."""

    executable: str
    version: str  # e.g. "3.14.2"
    cache_tag: str  # e.g. "cpython-314": the `.pyc` files' middle name
    # The `.pyc` header's magic number (hex), fixed across a minor version's final releases. Were a patch release
    # ever to change it, the runtime would ignore these files and compile the sources, as without bytecode.
    magic: str

    @property
    def key(self) -> str:
        """What the compiled output depends on, for the build folders' names."""
        return f"{self.cache_tag}/{self.magic}/{INVALIDATION_MODE}"

    def compile(self, folder: Path, *, runtime_root: str) -> list[str]:
        """Write `__pycache__/*.<cache_tag>.pyc` next to every `.py` under `folder`; the errors compileall reported.

        The bytecode records each file under `runtime_root` (where Lambda mounts `folder`) instead of this
        machine's path, as tracebacks show it there anyway, and the output does not depend on the checkout's path.
        A file that does not compile keeps its source only (compileall compiles the others) and is reported.
        """
        # -I: no PYTHON* variables, so PYTHONPYCACHEPREFIX cannot send the bytecode elsewhere.
        command = [
            self.executable,
            "-I",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            INVALIDATION_MODE,
            "-d",
            runtime_root,
            str(folder),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
        if done.returncode == 0:
            return []
        return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()] or [
            f"compileall exited with status {done.returncode}"
        ]


def lambda_interpreter() -> Interpreter | None:
    """The interpreter that compiles the assets' bytecode, or None: they then ship their sources only.

    GPTOSS_LAMBDA_PYTHON names one (an error if it is not CPython LAMBDA_PYTHON); otherwise `uv python find`
    looks for one among uv's managed interpreters, virtual environments and the search path, without ever
    downloading one. Looked up once per process.

    Raises:
        RuntimeError: GPTOSS_LAMBDA_PYTHON names something that is not a final CPython LAMBDA_PYTHON.
    """
    return _lookup(LAMBDA_PYTHON, os.environ.get(OVERRIDE_VARIABLE) or None)


@functools.cache
def _lookup(version: str, override: str | None) -> Interpreter | None:
    if override is not None:
        found = probe(override, version)
        if found is None:
            raise RuntimeError(
                f"{OVERRIDE_VARIABLE}={override} is not a final CPython {version} (the Lambda runtime's version)"
            )
        return found
    executable = find_with_uv(version)
    return probe(executable, version) if executable is not None else None


def uv_executable() -> str | None:
    """uv: the one `uv run` started us with, else the one on PATH."""
    return os.environ.get("UV") or shutil.which("uv")


def find_with_uv(version: str) -> str | None:
    """`uv python find cpython@<version>`: the path of an installed interpreter, never a download; None if none."""
    uv = uv_executable()
    if uv is None:
        return None
    command = [uv, "python", "find", "--no-project", "--no-python-downloads", "--offline", f"cpython@{version}"]
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines else None


def probe(executable: str, version: str) -> Interpreter | None:
    """`executable` as an Interpreter if it is a final, GIL-enabled CPython `version` (e.g. "3.14"), else None.

    A pre-release has its own bytecode magic number, which the runtime's final release would reject; a
    free-threaded build is not what Lambda runs.
    """
    try:
        done = subprocess.run(  # noqa: S603 - the candidate interpreter with a fixed script
            [executable, "-I", "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
        )
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    major, minor = (int(part) for part in version.split("."))
    if (
        facts["implementation"] != "cpython"
        or facts["version"] != [major, minor]
        or facts["releaselevel"] != "final"
        or facts["free_threaded"]
        or facts["cache_tag"] != f"cpython-{major}{minor}"
    ):
        return None
    return Interpreter(
        executable=executable, version=facts["full_version"], cache_tag=facts["cache_tag"], magic=facts["magic"]
    )


def compiled_copy(source: Path, build_dir: Path, interpreter: Interpreter, *, runtime_root: str = TASK_ROOT) -> Path:
    """A copy of `source` (without its own bytecode caches) with `interpreter`'s bytecode, built once.

    The copy is `build_dir/<source name>-<digest>`, the digest covering every file's path, executable bit and
    content and the interpreter's key: any change to the sources or the interpreter makes a new folder.

    Raises:
        RuntimeError: a file of `source` does not compile with `interpreter` (it would not import on Lambda either).
    """
    files = sorted(_source_files(source))
    digest = hashlib.sha256(interpreter.key.encode())
    for relative in files:
        path = source / relative
        digest.update(f"\0{relative.as_posix()}\0{_executable_bit(path)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    target = build_dir / f"{source.name}-{digest.hexdigest()[:16]}"
    if target.is_dir():
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"staging-{target.name}-", dir=build_dir))
    try:
        for relative in files:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, staging / relative)
        errors = interpreter.compile(staging, runtime_root=runtime_root)
        if errors:
            raise RuntimeError(f"{source} does not compile with Python {interpreter.version}:\n" + "\n".join(errors))
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # else another synth built the same folder first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _source_files(root: Path) -> Iterator[Path]:
    """Every file under `root` an asset ships, relative to it: all but `__pycache__` folders and `.pyc` files."""
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        for name in names:
            if not name.endswith(".pyc"):
                yield (Path(folder) / name).relative_to(root)


def _executable_bit(path: Path) -> int:
    return 1 if path.stat().st_mode & 0o111 else 0


def no_bytecode_warning() -> str:
    """What the synth says when the assets ship without bytecode: what it costs and how to fix it."""
    return (
        f"The Lambda functions and the dependency layer ship without bytecode: no CPython {LAMBDA_PYTHON} (the "
        f"runtime's version) was found by `uv python find {LAMBDA_PYTHON}` or in {OVERRIDE_VARIABLE}. Lambda's code "
        "is read-only, so every cold start compiles every module it imports (boto3, botocore, pydantic, starlette, "
        "uvicorn, Powertools, ours) before the chat function's first token: `import chat.app` took about 3x as long "
        "from sources as from bytecode when measured locally (0.68-1.2 s vs 0.23-0.43 s; docs/performance.md). "
        f"To fix it: `uv python install {LAMBDA_PYTHON}`, then synthesize or deploy again."
    )


def report_to_stderr(message: str) -> None:
    """One line on the synth's stderr (the CDK CLI shows a synth's stderr)."""
    print(f"[gpt-oss] {message}", file=sys.stderr)  # noqa: T201 - the synth's own console
