"""NFD's image-compatibility spec and rule engine, exactly as NFD reads and evaluates them.

Modules: :mod:`.spec` (the spec model and parser, and the operator vocabulary ``Op``),
:mod:`.rules` (compile once, evaluate against a node's features), :mod:`.golang` (every Go,
strconv, YAML 1.1 and regexp-dialect compatibility helper), :mod:`.lint` (``check-spec``),
:mod:`.satisfiable` (which expressions and sets no node can satisfy, asked of the engine),
:mod:`.catalogue` (the features and element names NFD reports) and :mod:`.report` (validate
reports and tables). Nothing here knows about Kubernetes, HTTP or registries.
"""
