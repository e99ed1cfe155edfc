"""`python -m hpstudy` runs the command-line interface."""

from hpstudy.cli import main

raise SystemExit(main())
