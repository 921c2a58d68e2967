"""`python -m snsdata`: the same command line as the `snsdata` script."""

from snsdata.cli import app

app(prog_name="snsdata")
