"""One exception type for every mistake a user can fix: bad params, bad files, bad plugins.

Commands print it as one line and exit with status 2, without a traceback (see
`prunelab.commands.user_errors_exit`).
"""

from __future__ import annotations


class UserError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
