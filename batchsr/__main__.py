import sys

from batchsr.cli import main

sys.exit(main())
