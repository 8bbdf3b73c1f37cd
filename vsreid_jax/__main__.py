import sys

from vsreid_jax.cli import main

sys.exit(main())
