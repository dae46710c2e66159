"""Differential conformance suite: our rule engine against NFD's own code (``nfd-eval``).

``generate`` writes seeded specs (as YAML text, so YAML scalar forms are exercised) and node
feature sets, ``oracle`` drives ``nfd-eval`` as one batch subprocess, ``differential`` compares
verdicts, shrinks a disagreement and prints a reproducer. ``python -m tests.nfd.conformance
--cases 200000`` runs a larger suite than ``make test`` does.
"""
