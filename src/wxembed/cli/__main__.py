"""``python -m wxembed.cli``: the ``wxembed`` command."""

from wxembed.cli import app

app()
