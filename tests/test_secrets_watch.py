"""The end-of-session log check (tests/secrets_watch.py) finds what it looks for."""

from tests.secrets_watch import PLANTED, leaks, remember


def test_the_log_check_finds_planted_secrets(tmp_path):
    remember("a-token-the-tests-made-0123456789")
    (tmp_path / "hub").mkdir()
    (tmp_path / PLANTED).touch()  # the session's own check passes over this directory
    (tmp_path / "hub" / "cookie_secret").write_text("ab" * 32 + "\n")
    clean = tmp_path / "hub" / "clean.log"
    clean.write_text("200 GET /hub/api/users (admin@127.0.0.1) 3.1ms\ntoken=short\n")
    assert leaks(tmp_path, include_planted=True) == []
    cases = [
        "POST /x?token=a-token-the-tests-made-0123456789",
        "cookie " + "ab" * 32,
        "env: KG_AUTH_TOKEN=Zm9vYmFyYmF6cXV4cXV1eA",
        "headers {'Authorization': 'token 0123456789abcdef0123'}",
    ]
    for i, line in enumerate(cases):
        (tmp_path / "hub" / f"leak{i}.log").write_text(f"INFO {line}\n")
    found = leaks(tmp_path, include_planted=True)
    assert leaks(tmp_path) == []
    for i in range(len(cases)):
        assert any(f"leak{i}.log" in f for f in found), (cases[i], found)
    assert not any("clean.log" in f for f in found)
