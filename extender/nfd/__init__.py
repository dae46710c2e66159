"""NFD's image-compatibility spec and rule engine, exactly as NFD reads and evaluates them.

Modules: :mod:`.spec` (the spec model and parser), :mod:`.rules` (compile once, evaluate
against a node's features), :mod:`.golang` (every Go, strconv, YAML 1.1 and regexp-dialect
compatibility helper), :mod:`.lint` (``check-spec``) and :mod:`.report` (validate reports and
tables). Nothing here knows about Kubernetes, HTTP or registries.
"""
