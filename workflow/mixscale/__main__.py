import sys

from mixscale.cli import main

sys.exit(main())
