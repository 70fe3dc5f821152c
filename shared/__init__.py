"""Code every MTA role shares: settings, logging, data model, recording, catalogue, crypto.

Every role that has metrics writes them to the Prometheus multiprocess folder ``mta api`` serves
(``PROMETHEUS_MULTIPROC_DIR``: set for worker processes by ``mta worker``, and by ``mta bot`` and
``mta scheduler`` through ``use_metrics_dir``). The metric files are named by host *and* pid before
any metric exists: scaled worker containers share one metrics volume and can have equal pids, and
the status service reads every file in it.
"""

import os as _os
from pathlib import Path as _Path


def _name_metric_files_by_host_and_pid() -> None:
    import socket

    from prometheus_client import values

    def process_identifier() -> str:
        host = socket.gethostname().replace("_", "-")
        return f"{host}-{_os.getpid()}"

    values.ValueClass = values.MultiProcessValue(process_identifier)


def use_metrics_dir(path: _Path) -> None:
    """Write this process's metrics to ``path``; call it before any metric is created."""
    path.mkdir(parents=True, exist_ok=True)
    _os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path.resolve())
    _name_metric_files_by_host_and_pid()


if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _name_metric_files_by_host_and_pid()
