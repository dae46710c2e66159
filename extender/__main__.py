"""`python -m extender` is the `image-compat-extender` command."""

import sys

from extender.cli import main

sys.exit(main())
