import sys

from mktlab.cli import main

sys.exit(main())
