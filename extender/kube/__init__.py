"""Kubernetes API access: the client, the list-then-watch mechanism, and the calls we make.

Modules: :mod:`.client` (building an API client), :mod:`.watch` (:class:`~.watch.ListWatch`),
:mod:`.nodefeatures` (the NodeFeature and Node list calls), :mod:`.pods` (the unbound-pod
watch that drives prefetch) and :mod:`.secrets` (pull secrets). Nothing here knows about specs,
node feature semantics or policy.
"""
