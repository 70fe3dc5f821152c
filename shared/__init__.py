"""Code every MTA role shares: settings, logging, data model, recording, catalogue, crypto.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (``mta worker``, ``mta up``, the compose services), the
metric files are named by host *and* pid before any metric exists: scaled worker containers share
one metrics volume and can have equal pids, and the status service reads every file in it.
"""

import os as _os

if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import socket as _socket

    from prometheus_client import values as _values

    def _process_identifier() -> str:
        host = _socket.gethostname().replace("_", "-")
        return f"{host}-{_os.getpid()}"

    _values.ValueClass = _values.MultiProcessValue(_process_identifier)
