import sys

from dcgan.commands.cli import main

sys.exit(main())
