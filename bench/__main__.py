"""``python -m bench [NAME ...] [--quick] [--readme]``: run benchmarks, print and save their tables."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import time
import traceback
from pathlib import Path

from bench._harness import Table, machine

HERE = Path(__file__).parent
README = HERE.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if re.match(r"b\d+_", m.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules (substring match); default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures")
    parser.add_argument("--readme", action="store_true", help="copy the tables into README.md")
    args = parser.parse_args(argv)
    chosen = [m for m in _modules() if not args.names or any(n in m for n in args.names)]
    header = f"Measured on {machine()}" + (" (quick mode: smoke sizes)" if args.quick else "")
    print(header, flush=True)
    tables: list[Table] = []
    failed = 0
    for name in chosen:
        started = time.monotonic()
        print(f"\n== {name} ...", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            for table in module.run(args.quick):
                print(table.markdown(), flush=True)
                tables.append(table)
        except Exception:
            failed += 1
            traceback.print_exc()
            tables.append(Table(f"{name}: failed", ["error"], [[traceback.format_exc(limit=1).strip()]]))
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    body = header + "\n\n" + "\n".join(t.markdown() for t in tables)
    (HERE / "RESULTS.md").write_text("# Benchmark results\n\n" + body, encoding="utf-8")
    if args.readme:
        text = README.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
            README.write_text(text[:start] + "\n" + body + "\n" + text[end:], encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
