"""Where tokens are shared between processes and hosts: the one pluggable axis.

``_shared`` holds the :class:`~bearer_m2m.TokenCache` protocol and the sealing
(AES-GCM, a key derived from the client's credentials) that every cache gets for
free; ``_file``, ``_redis`` and ``_tiered`` are the stores. The public names are
exported, lazily, by the package itself (``bearer_m2m.FileCache``...), so using one
store imports only what it needs.
"""
