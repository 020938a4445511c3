"""``python -m hub_ext.services.analytics``: run the analytics service."""

from .app import main

main()
