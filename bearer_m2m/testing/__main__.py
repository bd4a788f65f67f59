"""``python -m bearer_m2m.testing``: the ``serve`` command."""

from ._cli import main

raise SystemExit(main())
