"""Where the load tests, the repository and the reports are."""

from __future__ import annotations

import os

#: ``loadtests/``: the scripts, the locust files, the vendored yardsticks.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(HERE)
#: Where reports go unless ``--reports-dir`` says otherwise.
REPORTS = os.path.join(HERE, "reports")
