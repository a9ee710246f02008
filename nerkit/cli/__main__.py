"""`python -m nerkit.cli`."""
import sys

from nerkit.cli import main

sys.exit(main())
