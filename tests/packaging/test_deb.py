"""The Debian package (scripts/package-deb.sh), installed on this machine: its files, its
user, its unit checked by systemd's own tools, and the installed service serving. Where
systemd runs, through systemctl; where it does not (containers, CI), the installed binary is
run as the unit says: its user, its ExecStart, its capabilities, no new privileges."""

import configparser
import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import which

UNIT = Path("/lib/systemd/system/azimds.service")
CONFIG = Path("/etc/azimds/azimds.toml")


def sh(*cmd, check=True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=check, **kwargs)


@pytest.fixture(scope="module")
def installed(deb):
    """Installs the .deb (apt resolves its dependencies) and purges it afterwards."""
    was_installed = sh("dpkg-query", "-W", "-f=${Status}", "azimds", check=False).stdout
    assert "install ok installed" not in was_installed, "azimds is already installed here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = sh("apt-get", "install", "-y", "-q", "--no-install-recommends",
                "-o", "DPkg::Lock::Timeout=120", str(deb), env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield
    finally:
        purge = sh("dpkg", "--purge", "azimds", check=False)
        assert purge.returncode == 0, purge.stdout + purge.stderr


def unit() -> configparser.ConfigParser:
    # systemd's format: repeated keys (SystemCallFilter) accumulate; keep the last for reading.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def test_the_package_installs_its_files(installed):
    files = set(sh("dpkg", "-L", "azimds").stdout.split())
    for path in ["/usr/bin/azimds", str(UNIT), str(CONFIG),
                 "/usr/share/man/man1/azimds.1.gz", "/usr/share/man/man1/azimds-serve.1.gz",
                 "/usr/share/bash-completion/completions/azimds",
                 "/usr/share/zsh/vendor-completions/_azimds",
                 "/usr/share/fish/vendor_completions.d/azimds.fish",
                 "/usr/share/doc/azimds/copyright"]:
        assert path in files, path
    assert sh("dpkg-query", "-W", "-f=${Conffiles}", "azimds").stdout.strip().startswith(str(CONFIG))
    assert sh("/usr/bin/azimds", "--version").stdout.startswith("azimds ")
    page = sh("man", "-P", "cat", "azimds-serve", env={**os.environ, "MANWIDTH": "120"}).stdout
    assert "--ready-file" in page.replace("\u2010", "-")


def test_it_has_its_own_system_user_and_an_owner_only_state_directory(installed):
    user = pwd.getpwnam("azimds")
    assert user.pw_uid < 1000 and user.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    assert grp.getgrgid(user.pw_gid).gr_name == "azimds"
    state = os.stat("/var/lib/azimds")
    assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (user.pw_uid, 0o700)


def test_systemd_analyze_verifies_the_unit_and_rates_its_exposure(installed):
    which("systemd-analyze")
    verify = sh("systemd-analyze", "verify", str(UNIT), check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = sh("systemd-analyze", "security", "--offline=true", str(UNIT), check=False)
    assert security.returncode == 0, security.stderr
    overall = [line for line in security.stdout.splitlines() if "Overall exposure level" in line]
    assert overall, security.stdout
    exposure = float(overall[0].split(":")[1].split()[0])
    assert exposure <= 2.0, overall[0]  # systemd calls 0-2 "OK", the best band


def test_the_unit_grants_only_binding_low_ports(installed):
    service = unit()["Service"]
    assert service["User"] == service["Group"] == "azimds"
    assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("StateDirectory", "azimds"), ("Type", "notify")]:
        assert service[key] == value, key


def run_as_the_unit(netns, start, config: Path):
    """The installed binary as the unit starts it: its user and group, its ExecStart with the
    config replaced, CAP_NET_BIND_SERVICE as its only (ambient, bounding) capability, no new
    privileges; in its own network namespace."""
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    argv[argv.index("--config") + 1] = str(config)
    setpriv = which("setpriv")
    return start(netns.command(
        setpriv, f"--reuid={service['User']}", f"--regid={service['Group']}", "--init-groups",
        "--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service",
        "--bounding-set=-all,+net_bind_service", "--no-new-privs", "--", *argv))


def get_name(url: str) -> tuple:
    """GET compute/name from the host's own network namespace (where systemd runs the unit)."""
    request = urllib.request.Request(f"{url}/metadata/instance/compute/name"
                                     "?api-version=2021-02-01&format=text", headers={"Metadata": "true"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return response.status, response.read().decode()


def test_the_installed_service_serves_with_its_default_config(installed, netns, start):
    if Path("/run/systemd/system").is_dir():
        # Type=notify: `systemctl restart` returns once azimds has sent READY=1.
        sh("systemctl", "restart", "azimds")
        try:
            assert sh("systemctl", "is-active", "azimds").stdout.strip() == "active"
            assert get_name("http://127.0.0.1:16925") == (200, "azimds-demo")
        finally:
            sh("systemctl", "stop", "azimds", check=False)
    else:
        server = run_as_the_unit(netns, start, CONFIG)
        assert server.ready["guest"] == ["127.0.0.1:16925"]
        assert server.ready["data"] == "/var/lib/azimds"
        status, body = netns.curl(f"http://{server.ready['guest'][0]}/metadata/instance/compute/name"
                                  "?api-version=2021-02-01&format=text", "Metadata: true")
        assert (status, body) == (200, "azimds-demo")
        assert server.close() == 0
    # The state is the service user's.
    token = os.stat("/var/lib/azimds/control-token")
    assert token.st_uid == pwd.getpwnam("azimds").pw_uid


@pytest.fixture
def readable_dir():
    """A directory the service user can read (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="azimds-deb-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_host_mode_on_port_80_needs_exactly_the_capability_the_unit_grants(installed, netns, start, readable_dir):
    config = readable_dir / "host.toml"
    config.write_text(CONFIG.read_text().replace('listen = ["127.0.0.1:16925"]',
                                                 'listen = ["169.254.169.254:80"]'))
    config.chmod(0o644)
    server = run_as_the_unit(netns, start, config)
    assert server.ready["guest"] == ["169.254.169.254:80"]
    status, body = netns.curl("http://169.254.169.254/metadata/instance/compute/name"
                              "?api-version=2021-02-01&format=text", "Metadata: true")
    assert (status, body) == (200, "azimds-demo")
    assert server.close() == 0
    # Without the capability the same start fails: the grant is what makes port 80 work.
    plain = netns.run(which("setpriv"), "--reuid=azimds", "--regid=azimds", "--init-groups",
                      "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
                      "/usr/bin/azimds", "serve", "--config", str(config), "--data", "/var/lib/azimds",
                      check=False)
    assert plain.returncode == 1 and "169.254.169.254:80" in plain.stderr, plain.stderr
