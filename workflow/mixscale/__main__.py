import sys

from mixscale.cli.main import main

sys.exit(main())
