"""The errors a memory node's page store answers with (cluster/page_store.py re-exports them).

Request path: MemoryNode actor -> PageStore / PageIndex raise these -> the switch turns each
into a gRPC status (actors/switch/switch_service.py). A failed request returns no bytes.
"""

from __future__ import annotations


class PageStoreError(Exception):
    """Base of every error the store answers with; a failed request returns no bytes."""


class PageAccessError(PageStoreError):
    """The request touches memory its tenant has no right to."""


class UnmappedAddressError(PageAccessError):
    """The address is in no page of this tenant: forged, or never allocated."""


class ForeignPageError(PageAccessError):
    """The address (or content key) belongs to another tenant."""


class FreedPageError(PageAccessError):
    """The address was in a page that has been freed."""


class BadLengthError(PageAccessError):
    """A length that is not positive or runs past the end of its page."""


class OutOfMemoryError(PageStoreError):
    """The board has no room left for another region (or the index for another entry)."""


class StorageError(PageStoreError):
    """The board failed a request it should have served."""


class CorruptPageError(PageStoreError):
    """A page read back whole no longer matches the checksum of its last whole write."""


class IndexConflictError(StorageError):
    """An index update that contradicts the index: a key mapped twice, or not as expected."""
