"""``python -m opus.cli``: the ``opus`` command."""

from opus.cli.main import main

raise SystemExit(main())
