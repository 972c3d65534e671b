import sys

from dcgan.cli import main

sys.exit(main())
