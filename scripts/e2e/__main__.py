"""``python -m scripts.e2e``: see :mod:`scripts.e2e`."""

from scripts.e2e.cli import main

raise SystemExit(main())
