"""``python -m hub_ext.services.courses``: run the course pages service."""

from .app import main

main()
