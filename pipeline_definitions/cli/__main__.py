"""`python -m pipeline_definitions.cli` is the `evalops` command."""

import sys

from pipeline_definitions.cli.main import main

sys.exit(main())
