"""The composition root: the `mta` command and `mta up`, the only code that may import every role.

`shared/` holds what roles agree on and knows no role; the roles (worker, bot, api, replica) meet
through those contracts. This package wires them into processes.
"""
