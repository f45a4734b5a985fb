"""`python -m bench [--quick]`: every benchmark's rows, in one table, with the machine they were measured on.

A target that is missed shows as MISS in the table; only a crash makes the exit status non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

from bench.table import Row, render

# In the order of the table; each module has `rows(*, quick: bool) -> list[Row]`.
MODULES = ("bench.chat", "bench.stream", "bench.cold", "bench.batch", "bench.orchestration", "bench.alternatives")


def collect(*, quick: bool, modules: tuple[str, ...] = MODULES) -> list[Row]:
    """Every module's rows, measured one module after the other (progress on stderr)."""
    rows: list[Row] = []
    for name in modules:
        started = time.monotonic()
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(name).rows(quick=quick))
        print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def machine(*, quick: bool) -> str:
    """The line that says where the table was measured."""
    return (
        f"Measured on {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), "
        f"Python {platform.python_version()}{' (quick run: smoke sizes, not a measurement)' if quick else ''}."
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--only", nargs="+", choices=MODULES, help="run only these modules")
    options = parser.parse_args(argv)
    # The batch rows load aws_cdk, whose jsii runtime warns about Node 20 on stderr (the README's Node).
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    started = time.monotonic()
    rows = collect(quick=options.quick, modules=tuple(options.only or MODULES))
    print(render(rows))
    print()
    print(machine(quick=options.quick))
    print(f"{sum(row.met is False for row in rows)} of {sum(row.met is not None for row in rows)} targets missed; "
          f"{time.monotonic() - started:.0f} s.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
