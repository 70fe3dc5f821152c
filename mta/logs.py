"""Role logs under ``mta up``: ``<data_dir>/logs/<role>.log``, rotated by size.

Each role writes its output straight into its log file (opened for appending), so a busy or
stopped ``mta up`` never blocks a role. ``rotate`` is called from the supervisor's loop: a file
past ``max_bytes`` is copied to ``<role>.log.1`` (older copies shift to ``.2`` … ``.<backups>``,
the oldest is dropped) and truncated in place; the role's next write lands at the new end
(O_APPEND). Lines written between the copy and the truncation (microseconds) are lost: the price
of never touching the role.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings


@dataclass(frozen=True)
class LogRotation:
    max_bytes: int
    backups: int

    @staticmethod
    def from_settings(settings: Settings) -> LogRotation:
        return LogRotation(settings.log_max_bytes, settings.log_backups)

    def rotate(self, path: Path) -> bool:
        """Rotate ``path`` if it outgrew ``max_bytes``; True when it did."""
        try:
            size = path.stat().st_size
        except OSError:
            return False
        if size <= self.max_bytes:
            return False
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                older = path.with_name(f"{path.name}.{index}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{index + 1}"))
            temp = path.with_name(f"{path.name}.1.tmp")
            shutil.copyfile(path, temp)
            os.chmod(temp, 0o600)
            temp.replace(path.with_name(f"{path.name}.1"))
        with path.open("r+b") as handle:
            handle.truncate(0)
        os.chmod(path, 0o600)
        return True


__all__ = ["LogRotation"]
