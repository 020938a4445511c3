"""The learning-event store: xAPI statements in (HTTP, importers, the hub), queries out.

- :mod:`.models`: the tables; :mod:`.store`: the engine, writes, the read-only URL;
- :mod:`.xapi`: statement validation and mapping (xAPI 1.0.3);
- :mod:`.importers`: OULAD, FutureLearn and Moodle CSV exports;
- :mod:`.queries`: what the analytics notebooks ask (pure SQLAlchemy, unit-tested);
- :mod:`.service`: the xAPI Statements resource as a JupyterHub-managed service;
- :mod:`.hubevents`: the hub's own server start/stop/activity as statements;
- :mod:`.hubconfig`: the ``c.JupyterHub.services`` entry and the role it needs.
"""
