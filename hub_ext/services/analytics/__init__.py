"""Teachers' annotated notebooks as JSON APIs: checked, run in guarded kernel gateways,
served behind the hub's identity and the course's analytics scope.

- :mod:`.notebook`: the check (routes, refusals naming the cell)
- :mod:`.launch`: what to launch (a pure spec); :mod:`.supervisor`: launch and watch it
- :mod:`.personality`: the kernel gateway personality with the guards
- :mod:`.cache`: the GET cache and the data watermark interface
- :mod:`.app`: the hub-managed service (front door, publish API, catalog)
- :mod:`.hubconfig`: what the hub's configuration must say about this service
"""
