"""The ``image-compat-extender`` command line: one module per subcommand.

Modules: :mod:`.main` (the parser and dispatch), :mod:`.serve`, :mod:`.validate`,
:mod:`.check_spec`, :mod:`.attach`, :mod:`.explain`, and :mod:`.common` (exit codes, errors,
registry flags shared by the commands that reach registries). Each subcommand's work lives in
the package that owns the concept (server, nfd, artifacts, policy); these modules parse
arguments and print. Exit codes: 0 success, 1 error, 2 usage, and 3 where a command reports
"not compatible".
"""

from extender.cli.common import EXIT_ERROR, EXIT_INCOMPATIBLE, EXIT_OK, EXIT_USAGE
from extender.cli.main import build_parser, main

__all__ = ["EXIT_ERROR", "EXIT_INCOMPATIBLE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
