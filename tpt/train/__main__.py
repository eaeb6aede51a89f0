"""`python -m tpt.train YAML [key=value ...]`, the module Composer's launcher starts on each device:

    composer -n 8 -m tpt.train composer_yamls/tpt-8b-from-scratch.yaml
"""

import sys

from tpt.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
