"""MTA's benchmarks: each module measures one claim side by side with what users would otherwise get.

Run all with ``python -m bench`` (or ``./scripts/bench.sh``); figures are printed and written to
``bench/RESULTS.md``; ``--readme`` also copies the table into README.md. Nothing here is asserted.
"""
