"""``python -m cnnlab`` (and ``torchrun -m cnnlab``) run the command-line interface."""

import sys

from cnnlab.cli import main

sys.exit(main())
