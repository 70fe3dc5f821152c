"""`python -m shared` is the same as the `mta` command."""

from shared.cli import main

main()
