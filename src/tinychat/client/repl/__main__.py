"""`python -m tinychat.client.repl`: the same as the `tinychat` command."""

import sys

from tinychat.client.repl.cli import main

sys.exit(main())
