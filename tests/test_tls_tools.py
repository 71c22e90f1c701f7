"""tubeworker and tubectl over TLS with tokens, end to end: the real scripts against a real
tubeserver that requires TLS, a client certificate and a token (--auth-file), and the
flags that set them up, whose mistakes are usage errors (status 2) that never show a token.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import procs
import pytest
import tlsfiles
from test_worker import TUBEWORKER, clean_env, jobs, parse_log
from tubeclient import Client, NotFound
from tubeclient.ctl import main as ctl_main
from tubeclient.harness.cli import UsageError, parse

ROOT = "tbs_root-token-for-tools-0123456789"
PRODUCER = "tbs_producer-token-for-tools-0123456789"
WORKER = "tbs_worker-token-for-tools-0123456789"
TUBE = "emails"
IO = 10.0
RUN_LIMIT = 60.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tlsfiles.Pki:
    return tlsfiles.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(pki: tlsfiles.Pki, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[procs.RunningServer]:
    """TLS, client certificates from the test CA, and tokens: root may do anything, the
    producer put into `emails`; the worker only consume from it (which covers the stats-job
    tubeworker reads for each job)."""
    def entry(name: str, token: str, rights: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return f'[[token]]\nname = "{name}"\nsha256 = "{digest}"\n{rights}\n\n'

    auth = tmp_path_factory.mktemp("auth") / "auth.toml"
    auth.write_text(entry("root", ROOT, 'admin = ["*"]')
                    + entry("producer", PRODUCER, f'produce = ["{TUBE}"]')
                    + entry("worker", WORKER, f'consume = ["{TUBE}"]'))
    with procs.tubeserver(*pki.server_flags(client_ca=True), "--auth-file", str(auth),
                          tls=pki.client(certificate=True), token=ROOT) as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


def root(srv: procs.RunningServer, pki: tlsfiles.Pki) -> Client[bytes]:
    return Client(srv.addr, ssl=pki.client(certificate=True), token=ROOT, io_timeout=IO)


def put(srv: procs.RunningServer, pki: tlsfiles.Pki, *bodies: bytes) -> list[int]:
    with Client(srv.addr, ssl=pki.client(certificate=True), token=PRODUCER, use=TUBE,
                io_timeout=IO) as c:
        return [c.put(b, ttr=30) for b in bodies]


def token_file(directory: Path, token: str) -> Path:
    path = directory / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def tls_flags(pki: tlsfiles.Pki) -> list[str]:
    return ["--tls-ca", str(pki.ca_file), "--tls-cert", str(pki.client_cert),
            "--tls-key", str(pki.client_key)]


def worker(srv: procs.RunningServer, *args: str, env: dict[str, str] | None = None
           ) -> tuple[int, str]:
    p = subprocess.run([TUBEWORKER, "-s", f"{srv.host}:{srv.port}", "-t", TUBE,
                        "--log-format", "json", *args], capture_output=True,
                       timeout=RUN_LIMIT, env=env or clean_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.decode(errors="replace")


def ready(srv: procs.RunningServer, pki: tlsfiles.Pki) -> int:
    with root(srv, pki) as c:
        try:
            return int(c.stats_tube(TUBE)["current-jobs-ready"])
        except NotFound:  # the tube went away with its last job
            return 0


# ---------------------------------------------------------------------- tubeworker


def test_tubeworker_over_tls_with_a_client_certificate_and_a_token_file(
        secured: procs.RunningServer, pki: tlsfiles.Pki, tmp_path: Path) -> None:
    ids = put(secured, pki, b"a", b"b", b"c")
    status, err = worker(secured, *tls_flags(pki), "--token-file",
                         str(token_file(tmp_path, WORKER)), "--burst", "--", "true")
    assert status == 0, err
    assert sorted(int(j["job"].rpartition("/")[2]) for j in jobs(parse_log(err))) == ids
    assert ready(secured, pki) == 0
    assert WORKER not in err


def test_tubeworker_takes_its_token_and_tls_files_from_the_environment(
        secured: procs.RunningServer, pki: tlsfiles.Pki) -> None:
    ids = put(secured, pki, b"env")
    env = clean_env(TUBEWORKER_TOKEN=WORKER, TUBEWORKER_TLS_CA=str(pki.ca_file),
                    TUBEWORKER_TLS_CERT=str(pki.client_cert),
                    TUBEWORKER_TLS_KEY=str(pki.client_key))
    # The child gets no TUBEWORKER_* variable: it prints whether the token leaked to it.
    status, err = worker(secured, "--burst", "--no-result", "--", sys.executable, "-c",
                         "import os,sys; sys.exit(3 if 'TUBEWORKER_TOKEN' in os.environ "
                         "else 0)", env=env)
    assert status == 0, err
    assert [(j["job"].rpartition("/")[2], j["action"]) for j in jobs(parse_log(err))] == [
        (str(ids[0]), "delete")]


def test_tubeworker_gives_up_on_a_refused_token(
        secured: procs.RunningServer, pki: tlsfiles.Pki, tmp_path: Path) -> None:
    status, err = worker(secured, *tls_flags(pki), "--token-file",
                         str(token_file(tmp_path, "tbs_wrong-token-for-tools")), "--", "true")
    assert status == 1, err
    giving_up = [r for r in parse_log(err) if r["event"] == "giving-up"]
    assert len(giving_up) == 1 and "UNAUTHORIZED" in giving_up[0]["reason"], err
    assert "tbs_wrong-token-for-tools" not in err


def test_tubeworker_without_tls_is_refused_by_a_tls_server(
        secured: procs.RunningServer) -> None:
    # Plain TCP to the TLS port: the connection breaks, and --burst gives up on it.
    status, err = worker(secured, "--burst", "--", "true")
    assert status == 1, err
    assert any(r["event"] == "giving-up" for r in parse_log(err)), err


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--tls-cert", "{cert}"], {}, "--tls-cert and --tls-key go together"),
    (["--tls-key", "{key}"], {}, "--tls-cert and --tls-key go together"),
    (["--tls-ca", "{dir}/missing.pem"], {}, "--tls-ca {dir}/missing.pem: No such file"),
    (["--tls-cert", "{cert}", "--tls-key", "{ca}"], {}, "--tls-key {ca}"),
    (["--token-file", "{dir}/missing"], {}, "--token-file {dir}/missing: No such file"),
    (["--token-file", "{empty}"], {}, "--token-file {empty}: empty"),
    (["--token-file", "{two_lines}"], {}, "more than one line"),
    ([], {"TUBEWORKER_TOKEN": "has a space"}, "TUBEWORKER_TOKEN: a token is"),
    ([], {"TUBEWORKER_TOKEN": "tbs_x", "TUBEWORKER_TOKEN_FILE": "{empty}"},
     "TUBEWORKER_TOKEN and TUBEWORKER_TOKEN_FILE are both set"),
    ([], {"TUBEWORKER_TLS": "maybe"}, "TUBEWORKER_TLS: expected true/false"),
])
def test_tubeworker_tls_and_token_mistakes_are_usage_errors(
        pki: tlsfiles.Pki, tmp_path: Path, args: list[str], env: dict[str, str],
        message: str) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two").write_text("tbs_a\ntbs_b\n")
    names = {"cert": pki.client_cert, "key": pki.client_key, "ca": pki.ca_file,
             "dir": tmp_path, "empty": tmp_path / "empty", "two_lines": tmp_path / "two"}
    with pytest.raises(UsageError) as info:
        parse([a.format(**names) for a in args] + ["--", "true"],
              {k: v.format(**names) for k, v in env.items()})
    assert message.format(**names) in str(info.value)
    assert "has a space" not in str(info.value)


def test_tubeworker_has_no_token_flag_and_keeps_the_token_out_of_reprs(
        pki: tlsfiles.Pki, tmp_path: Path) -> None:
    done = subprocess.run([TUBEWORKER, "--token", "tbs_x", "--", "true"], capture_output=True,
                          timeout=RUN_LIMIT, env=clean_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and b"there is no --token" in done.stderr
    assert b"tbs_x" not in done.stderr
    config = parse(["--token-file", str(token_file(tmp_path, WORKER)), "--tls-ca",
                    str(pki.ca_file), "--", "true"], {})
    assert config.token == WORKER and config.tls is not None
    assert WORKER not in repr(config)
    assert parse(["--", "true"], {}).tls is None
    assert parse(["--tls", "--", "true"], {}).tls is not None


# ---------------------------------------------------------------------- tubectl


def tubectl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUBECTL_")}
    clean.update(env or {})
    p = subprocess.run([sys.executable, "-m", "tubeclient.ctl", *args], capture_output=True,
                       timeout=RUN_LIMIT, env=clean, stdin=subprocess.DEVNULL)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert "Traceback" not in err and "unexpected error" not in err, err
    return p.returncode, out, err


def test_tubectl_over_tls_with_a_token(
        secured: procs.RunningServer, pki: tlsfiles.Pki, tmp_path: Path) -> None:
    server = f"tls://{secured.host}:{secured.port}"
    status, out, err = tubectl("-s", server, *tls_flags(pki), "--token-file",
                               str(token_file(tmp_path, ROOT)), "put", "tools", "hello")
    assert status == 0, err
    assert "inserted job" in out
    env = {"TUBECTL_TOKEN": ROOT, "TUBECTL_TLS_CA": str(pki.ca_file),
           "TUBECTL_TLS_CERT": str(pki.client_cert), "TUBECTL_TLS_KEY": str(pki.client_key),
           "TUBECTL_SERVERS": f"{secured.host}:{secured.port}"}
    status, out, err = tubectl("tubes", env=env)
    assert status == 0, err
    assert "tools" in out
    # The producer's rights do not cover `tubes` (inspect): UNAUTHORIZED, said once.
    status, out, err = tubectl("tubes", env={**env, "TUBECTL_TOKEN": PRODUCER})
    assert status == 1
    assert "UNAUTHORIZED" in err and PRODUCER not in err + out


def test_tubectl_refusals_are_one_line_each(
        secured: procs.RunningServer, pki: tlsfiles.Pki) -> None:
    where = f"{secured.host}:{secured.port}"
    status, _, err = tubectl("-s", where, *tls_flags(pki), "stats",
                             env={"TUBECTL_TOKEN": "tbs_wrong-token"})
    assert status == 1 and "UNAUTHORIZED" in err and "tbs_wrong-token" not in err, err
    status, _, err = tubectl("-s", where, "stats", env={"TUBECTL_TOKEN": ROOT})
    assert status == 1 and "the connection broke" in err, err  # plain TCP to a TLS port
    status, _, err = tubectl("-s", f"tls://{where}", "stats", env={"TUBECTL_TOKEN": ROOT})
    assert status == 1 and "CERTIFICATE_VERIFY_FAILED" in err, err  # the system's CAs


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--tls-cert", "{cert}"], {}, "--tls-cert and --tls-key go together"),
    (["-s", "tls://unix:/run/x.sock"], {}, "TLS is for TCP servers"),
    (["--tls-ca", "{dir}/missing.pem"], {}, "No such file"),
    ([], {"TUBECTL_TOKEN": "a", "TUBECTL_TOKEN_FILE": "{ca}"}, "are both set"),
    ([], {"TUBECTL_TOKEN": "has a space"}, "TUBECTL_TOKEN: a token is"),
    ([], {"TUBECTL_TLS": "maybe"}, "TUBECTL_TLS: expected"),
    (["--token", "has a space"], {}, "there is no --token"),
    (["--tok", "has a space"], {}, "ambiguous option: --tok"),
])
def test_tubectl_tls_and_token_mistakes_are_usage_errors(
        pki: tlsfiles.Pki, tmp_path: Path, args: list[str], env: dict[str, str],
        message: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"cert": pki.client_cert, "ca": pki.ca_file, "dir": tmp_path}
    for var in [v for v in os.environ if v.startswith("TUBECTL_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value.format(**names))
    with pytest.raises(SystemExit) as info:
        ctl_main([*(a.format(**names) for a in args), "stats"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err and "has a space" not in err
