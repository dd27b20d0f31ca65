"""``python -m wxembed``: the ``wxembed`` command."""

from wxembed.cli import app

app()
