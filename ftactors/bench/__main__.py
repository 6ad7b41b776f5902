"""``python -m ftactors.bench``: see :func:`ftactors.bench.main`."""

import sys

from ftactors.bench import main

sys.exit(main())
