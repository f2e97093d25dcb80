"""`python -m harness`, which is also what `accelerate launch -m harness train ...` runs."""

import sys

from harness.cli import main

sys.exit(main())
