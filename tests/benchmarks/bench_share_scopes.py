"""Why a teacher's every request grows faster than the course: JupyterHub's scopes of a token
whose owner has N user shares (issue #15's teacher home page curve).

A course's teachers hold a user share of each learner's course server (group shares do not
reach tokens in JupyterHub 6.1.1: see :mod:`hub_ext.rbac`), so a teacher of a 5,000-learner
course owns 5,000 shares, and every request they make through a token (the hub's pages'
OAuth cookie included) runs ``jupyterhub.scopes.get_scopes_for`` over them. Measured here,
in process on an in-memory SQLite hub database with JupyterHub's own ORM:

1. ``get_scopes_for(token)`` for owners of 500 ... 4,000 shares, and its growth exponent
   (1 = linear);
2. one cause of the growth: its loop ``owner_scopes |= frozenset(share.scopes)`` rebinds a
   *frozenset*, copying every scope gathered so far once per share (quadratic); the same
   union into a ``set`` (in place, linear) is the baseline, on the same scopes in the
   same process.

The rest of the cost is linear but large: ``Share.scopes`` reads each share's owner and
spawner names, and each of those is a lazy load of its own (one SELECT per share, with the
owner's own eagerly loaded relationships: 2,001 of them for 2,000 shares, in a profile).
Both are JupyterHub's; upstream fixes would be a ``set`` accumulator and loading the
shares with their owners and spawners at once. Nothing in hub_ext overrides them.

    python -m tests.benchmarks.bench_share_scopes [--sizes 500 1000 2000 4000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from jupyterhub import orm, roles, scopes
from sqlalchemy import insert, select

from hub_ext.rbac import share_scopes


def hub_db_with_shares(n: int):
    """An in-memory hub database: a teacher ``t`` holding a user share of ``n`` learners'
    ``c`` servers (the rows the course spawner's first starts write); ``t``'s token."""
    db = orm.new_session_factory("sqlite://")()
    for role in roles.get_default_roles():
        roles.create_role(db, role)
    db.add(orm.OAuthClient(identifier="jupyterhub"))
    db.execute(insert(orm.User), [{"name": f"l{i}"} for i in range(n)] + [{"name": "t"}])
    users = dict(db.execute(select(orm.User.name, orm.User.id)).all())
    db.execute(insert(orm.Spawner), [{"user_id": users[f"l{i}"], "name": "c"} for i in range(n)])
    spawners = dict(db.execute(select(orm.Spawner.user_id, orm.Spawner.id)).all())
    now = orm.Share.now()
    db.execute(
        insert(orm.Share),
        [
            {
                "owner_id": users[f"l{i}"],
                "spawner_id": spawners[users[f"l{i}"]],
                "user_id": users["t"],
                "_scopes": sorted(share_scopes(f"l{i}", "c")),
                "created_at": now,
            }
            for i in range(n)
        ],
    )
    teacher = orm.User.find(db, "t")
    roles.assign_default_roles(db, teacher)
    db.commit()
    return db, teacher.new_api_token(scopes=["inherit"], note="bench")


def time_scopes(n: int, rounds: int = 3) -> float:
    """Median seconds of ``get_scopes_for`` of the token of an owner of ``n`` shares (each
    round from the database, as each request is)."""
    db, token = hub_db_with_shares(n)
    try:
        times = []
        for _ in range(rounds):
            db.expire_all()
            found = orm.APIToken.find(db, token)
            t0 = time.perf_counter()
            got = scopes.get_scopes_for(found)
            times.append(time.perf_counter() - t0)
        assert any(s.startswith("access:servers!server=l0/c") for s in got), "shares not seen"
        return statistics.median(times)
    finally:
        db.close()


def time_union(n: int) -> tuple[float, float]:
    """Seconds to union ``n`` shares' scopes as JupyterHub does (frozenset) and in place."""
    shares = [frozenset(share_scopes(f"l{i}", "c")) for i in range(n)]
    start = frozenset({"read:users:name!user=t"})
    t0 = time.perf_counter()
    gathered = start
    for s in shares:
        gathered |= s  # a new frozenset each time: JupyterHub 6.1.1's loop
    rebinding = time.perf_counter() - t0
    t0 = time.perf_counter()
    in_place = set(start)
    for s in shares:
        in_place |= s
    baseline = time.perf_counter() - t0
    assert gathered == in_place
    return rebinding, baseline


def growth(sizes, values) -> float:
    return math.log(values[-1] / values[0]) / math.log(sizes[-1] / sizes[0])


def main(sizes: list[int]) -> None:
    print("== bench_share_scopes: a token's scopes when its owner holds N user shares ==")
    print(
        f"  {'shares':>8}  {'get_scopes_for':>15}  {'union (jupyterhub)':>19}  "
        f"{'union (in place)':>17}  {'ratio':>6}"
    )
    whole, unions = [], []
    for n in sizes:
        took = time_scopes(n)
        rebinding, baseline = time_union(n)
        whole.append(took)
        unions.append(rebinding)
        print(
            f"  {n:>8}  {took * 1000:>12.0f} ms  {rebinding * 1000:>16.1f} ms  "
            f"{baseline * 1000:>14.2f} ms  {rebinding / baseline:>6.0f}"
        )
    print(
        f"  growth (1 = linear): get_scopes_for {growth(sizes, whole):.2f}, "
        f"its frozenset union {growth(sizes, unions):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    main(parser.parse_args().sizes)
