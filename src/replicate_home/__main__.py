"""``python -m replicate_home``: the command line."""

from ._cli import main

raise SystemExit(main())
