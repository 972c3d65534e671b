"""Train the DCGAN: `python train.py [--config FILE] [KEY=VALUE ...]`, or under `accelerate launch`."""

import sys

from dcgan.commands.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
