"""`python -m meterseal` runs the command line."""

from meterseal.cli import main

main()
