"""Random ids (UUID version 4) for holds and request ids, cheap under many threads."""

from __future__ import annotations

import os
import threading
import uuid


class _RandomIds:
    """Random (version 4) UUIDs from a buffer of ``os.urandom`` bytes, one syscall per 256 ids.

    ``uuid.uuid4()`` asks the kernel for 16 bytes each time; on a busy threaded worker each of
    those calls also gives the GIL away and waits to get it back. Same randomness source, same
    ids, fewer trips. The buffer is dropped in a forked child, so two processes never share it.
    """

    CHUNK = 16 * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buffer, self._offset = b"", 0

    def __call__(self) -> uuid.UUID:
        with self._lock:
            if self._offset >= len(self._buffer):
                self._buffer, self._offset = os.urandom(self.CHUNK), 0
            raw = self._buffer[self._offset : self._offset + 16]
            self._offset += 16
        return uuid.UUID(bytes=raw, version=4)


#: A new hold id (UUID version 4).


#: A new random (version 4) UUID.
random_uuid = _RandomIds()
