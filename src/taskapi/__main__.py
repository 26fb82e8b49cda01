"""`python -m taskapi`: the same command line as `taskapi`."""

from taskapi.cli import main

main()
