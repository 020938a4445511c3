"""``python -m hub_ext.services.grading``: run the grading service."""

from .app import main

main()
