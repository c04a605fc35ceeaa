import sys

from scripts.report import main

sys.exit(main())
