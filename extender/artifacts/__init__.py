"""Artifact sources: where an image's compatibility spec comes from.

Modules: :mod:`.types` (the source protocol and the keys and answers it speaks),
:mod:`.registry_source` (specs attached to images in their registries, cached),
:mod:`.spec_map` (``--spec-map``: specs named by image patterns in a file) and
:mod:`.nfd_client` (one spec fetched the way ``nfd compat validate-node`` does).
"""
