"""Node features: the model, the store requests read, and the sources that feed it.

Modules: :mod:`.model` (NodeFeature objects to interned, fingerprinted features, in NFD's
merge order), :mod:`.store` (the lock-free snapshot store and the protocol the policy reads it
through), :mod:`.filesource` (``--features-file``) and :mod:`.kubesource` (NodeFeature and Node
watches through :mod:`extender.kube`).
"""
