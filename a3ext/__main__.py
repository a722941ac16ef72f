"""`python -m a3ext ...` is the same as the `a3ext` command.

May import: ``a3ext.cli``.
"""
import sys

from .cli import main

sys.exit(main())
