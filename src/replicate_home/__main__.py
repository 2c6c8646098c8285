"""``python -m replicate_home``: the command line."""

from .cli import main

raise SystemExit(main())
