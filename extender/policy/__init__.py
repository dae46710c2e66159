"""The scheduling policy: from a pod and candidate nodes to a filter answer and scores.

Modules: :mod:`.pods` (which pods we judge and what a pod asks for), :mod:`.memo` (verdicts
memoised by feature fingerprint), :mod:`.decide` (filter and score, and what each failure
becomes). It knows nothing of HTTP; it reads specs through :mod:`extender.artifacts` and node
features through :mod:`extender.nodes`.
"""
