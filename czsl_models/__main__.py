"""python -m czsl_models ..."""

import sys

from .cli import main

sys.exit(main())
