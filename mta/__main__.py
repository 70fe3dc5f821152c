"""`python -m mta` is the same as the `mta` command."""

from mta.cli import main

main()
