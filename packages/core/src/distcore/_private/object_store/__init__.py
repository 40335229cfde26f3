"""The node's shared-memory object store.

``shm``: segment files and mappings; ``state``: pure accounting (events in,
instructions out); ``store``: :class:`~.store.LocalObjectStore`, the I/O shell
the node manager runs.
"""
