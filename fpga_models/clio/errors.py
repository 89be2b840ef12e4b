"""The errors a Clio memory node answers with. A failed request returns no bytes.

`AccessViolation` covers every attempt to touch memory a process does not own: an address
never allocated, one that belongs to another process, a freed range, a write to a read-only
range, or another process's request handle. Its subclasses say which.
"""

from __future__ import annotations


class ClioError(Exception):
    """Base of every error the board or its client library raises."""


class AccessViolation(ClioError):
    """The process has no right to this address (or handle)."""


class UnmappedAddress(AccessViolation):
    """The address is in no range this process allocated: forged, or another process's."""


class FreedAddress(AccessViolation):
    """The address was in a range this process has freed."""


class ReadOnlyViolation(AccessViolation):
    """A write or atomic aimed at a range allocated read-only."""


class ForeignHandle(AccessViolation):
    """A request handle that another process issued, or that never existed."""


class OutOfRange(ClioError):
    """A length that is not positive, is larger than one request may move, or runs past the
    end of the allocated range."""


class OutOfMemory(ClioError):
    """No virtual range or physical page left for the allocation."""


class RequestFailed(ClioError):
    """The network lost or refused the request more often than the retry budget allows."""
