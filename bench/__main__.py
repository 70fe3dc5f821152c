"""``python -m bench [NAME ...] [--quick] [--readme]``: run benchmarks, print and save their tables.

Each benchmark's tables are saved as one section of ``bench/RESULTS.md`` (and, with ``--readme``,
of the README's benchmark block), marked with the benchmark's name: running some benchmarks
replaces their own sections and keeps the others. Quick runs (smoke sizes) print only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
import time
import traceback
from pathlib import Path

from bench._harness import Table, machine

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS.md"
README = HERE.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
TITLE = "# Benchmark results\n"
_SECTION = re.compile(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->\n", re.DOTALL)


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if re.match(r"b\d+_", m.name))


def section(name: str, measured: str, tables: list[Table]) -> str:
    body = "\n".join(t.markdown() for t in tables)
    return f"<!-- bench:{name} -->\n_Measured on {measured}._\n\n{body}\n<!-- /bench:{name} -->\n"


def merge(text: str, sections: dict[str, str]) -> str:
    """``text``'s sections with ``sections`` put in (replacing same-named ones), in name order."""
    kept = {match.group(1): match.group(0) for match in _SECTION.finditer(text)}
    kept.update(sections)
    return "\n".join(kept[name] for name in sorted(kept))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmark modules (substring match); default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run that saves nothing")
    parser.add_argument("--readme", action="store_true", help="also put the tables into README.md")
    args = parser.parse_args(argv)
    chosen = [m for m in _modules() if not args.names or any(n in m for n in args.names)]
    measured = machine()
    print(f"Measured on {measured}" + (" (quick mode: smoke sizes)" if args.quick else ""), flush=True)
    sections: dict[str, str] = {}
    failed = 0
    for name in chosen:
        started = time.monotonic()
        load = os.getloadavg()[0]
        print(f"\n== {name} ...", flush=True)
        tables: list[Table] = []
        try:
            module = importlib.import_module(f"bench.{name}")
            for table in module.run(args.quick):
                print(table.markdown(), flush=True)
                tables.append(table)
        except Exception:
            failed += 1
            traceback.print_exc()
            tables.append(Table(f"{name}: failed", ["error"], [[traceback.format_exc(limit=1).strip()]]))
        took_s = time.monotonic() - started
        print(f"   ({took_s:.0f} s)", flush=True)
        context = f"{measured}; load average {load:.1f} at start; {took_s:.0f} s"
        sections[name] = section(name, context, tables)
    if not args.quick:
        save(sections, readme=args.readme)
    return 1 if failed else 0


def save(sections: dict[str, str], *, readme: bool) -> None:
    """Put ``sections`` into ``bench/RESULTS.md`` and, with ``readme``, into the README's block."""
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    RESULTS.write_text(TITLE + "\n" + merge(old, sections), encoding="utf-8")
    if readme:
        text = README.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
            block = merge(text[start:end], sections)
            README.write_text(text[:start] + "\n" + block + text[end:], encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
