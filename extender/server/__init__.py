"""The HTTP server kube-scheduler calls, and the one place every part is put together.

Modules: :mod:`.app` (the composition root: builds every source and client in
``cleanup_ctx`` and closes them there; serving and shutdown), :mod:`.routes` (handlers and
middlewares), :mod:`.protocol` (the extender wire format), :mod:`.config` (the option table and
settings), :mod:`.metrics`, :mod:`.logs` and :mod:`.tls`. This is the top layer: nothing below
it imports from here.
"""
