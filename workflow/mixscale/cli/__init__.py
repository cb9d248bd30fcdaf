"""``python -m mixscale``: every command, one module per command group (main.py builds the
parser from them)."""
