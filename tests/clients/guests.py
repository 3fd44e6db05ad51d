"""Guests that provision as Azure VMs do, against azimds' IMDS and WireServer.

A "host" network namespace holds a bridge (10.214.0.1/24), 169.254.169.254/32 and
168.63.129.16/32 on its loopback, azimds serving both (`--callers source-address`), and dnsmasq
offering each guest its address with DHCP options 121 (routes to both services and a default
route) and 245 (the WireServer address) sent unconditionally (wireserver.md §1.3). Each guest is
a namespace on a veth with a fixed MAC, running the unmodified agent in an overlay of this
host's root (provisioning/in_root.sh), with its provisioning CD (made by `azimds ovf-env
--iso`) as /dev/sr0. What the agent wrote stays in the overlay's upper directory, which the
tests read.

Needs root. Every namespace, loop device and process is removed by `Topology.close()`.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IN_ROOT = HERE / "provisioning" / "in_root.sh"
VMS_FILE = HERE / "provisioning" / "vms.yaml"
SUBNET = "10.214.0"
HOST = f"{SUBNET}.1"
IMDS_IP = "169.254.169.254"
WIRESERVER_IP = "168.63.129.16"
# "MSFT AZURE VM" in decimal ASCII (wireserver.md §1.1).
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def _run(*cmd, check=True, timeout=60, **kwargs):
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, cmd))}` failed ({proc.returncode}): "
                           f"{proc.stderr.strip()} {proc.stdout.strip()}")
    return proc


def _kill_namespace(ns: str) -> None:
    out = _run("ip", "netns", "list", check=False).stdout
    if not any(line.split()[0] == ns for line in out.splitlines() if line.strip()):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _run("ip", "netns", "pids", ns, check=False).stdout.split():
            time.sleep(0.05)
    _run("ip", "netns", "del", ns, check=False)


class Guest:
    """One VM: its namespace, MAC, address, work directory and CD."""

    def __init__(self, topology, index: int, vm_id: str, entry: dict, dhcp: bool):
        self.topology = topology
        self.vm_id = vm_id
        self.entry = entry
        self.compute = entry["instance"]["compute"]
        self.address = entry["callers"][0]
        mac = entry["instance"]["network"]["interface"][0]["macAddress"]
        self.mac = ":".join(mac[i:i + 2] for i in range(0, 12, 2)).lower()
        self.ns = f"{topology.prefix}-{vm_id}"
        self.port = f"veth{index}"
        self.dhcp = dhcp
        self.work = topology.workroot / vm_id
        self.loop = None
        self.proc = None

    @property
    def upper(self) -> Path:
        """The guest's writes: what the agents changed in its root."""
        return self.work / "upper"

    def written(self, path: str) -> str:
        return (self.upper / path.lstrip("/")).read_text()

    def set_smbios(self) -> None:
        """What the hypervisor puts in SMBIOS for an Azure VM (wireserver.md §1.1, §1.4): the
        chassis asset tag, and the VM id as the system UUID."""
        dmi = self.work / "dmi"
        dmi.mkdir(parents=True, exist_ok=True)
        (dmi / "chassis_asset_tag").write_text(AZURE_ASSET_TAG + "\n")
        (dmi / "product_uuid").write_text(self.compute["vmId"] + "\n")
        (dmi / "sys_vendor").write_text("Microsoft Corporation\n")
        (dmi / "product_name").write_text("Virtual Machine\n")

    def attach_cd(self) -> None:
        """`azimds ovf-env VM --iso`, attached as a read-only loop device (the guest's sr0)."""
        iso = self.work / "ovf-env.iso"
        self.topology.azimds("ovf-env", self.vm_id, "--iso", str(iso))
        self.loop = _run("losetup", "--find", "--show", "--read-only", str(iso)).stdout.strip()

    def start(self, *command: str, extra: str = "-", log_name: str = "agent.log") -> subprocess.Popen:
        """Runs `command` in the guest's root, in the background."""
        self.work.mkdir(parents=True, exist_ok=True)
        log = open(self.work / log_name, "wb")
        try:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--uts", "--pid", "--fork",
                 "--kill-child", "sh", str(IN_ROOT), str(self.work), extra, self.loop or "-",
                 *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=_clean_env(),
            )
        finally:
            log.close()
        return self.proc

    def run(self, *command: str, extra: str = "-", timeout: float = 300) -> int:
        proc = self.start(*command, extra=extra)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self, name: str = "agent.log") -> str:
        try:
            return (self.work / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def curl(self, url: str, *args: str) -> subprocess.CompletedProcess:
        return curl(self.ns, url, *args)


def curl(ns: str, url: str, *args: str) -> subprocess.CompletedProcess:
    """curl from inside namespace `ns` (exit status and output as they are)."""
    return _run("ip", "netns", "exec", ns, "curl", "-sS", "--noproxy", "*",
                "--max-time", "5", *args, url, check=False, env=_clean_env())


def _clean_env() -> dict:
    drop = {"http_proxy", "https_proxy", "all_proxy", "no_proxy",
            "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTHON")}


class Topology:
    """The host namespace with azimds and dnsmasq, and one namespace per guest."""

    def __init__(self, binary: Path, workroot: Path, tag: str):
        import yaml
        self.binary = binary
        self.workroot = workroot
        self.prefix = f"azimds-pv{tag}"
        self.host = f"{self.prefix}-host"
        self.socket = workroot / "control.sock"
        self.data = workroot / "data"
        self.namespaces = []
        self.processes = []
        with open(VMS_FILE, encoding="utf-8") as fh:
            self.definitions = yaml.safe_load(fh)["vms"]
        self.guests = {}
        for index, entry in enumerate(self.definitions):
            # cloud-init brings up its own DHCP; waagent and azure-init find the network up.
            dhcp = entry["id"] not in ("wa", "ai")
            self.guests[entry["id"]] = Guest(self, index, entry["id"], entry, dhcp)
        self.rogue = f"{self.prefix}-rogue"

    # ---------------------------------------------------------------- setup
    def _namespace(self, name: str) -> None:
        _kill_namespace(name)
        self.namespaces.append(name)
        _run("ip", "netns", "add", name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def start(self) -> None:
        self._namespace(self.host)
        ns = self.host
        _run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", ns, "addr", "add", f"{HOST}/24", "dev", "br0")
        _run("ip", "-n", ns, "link", "set", "br0", "up")
        for address in (IMDS_IP, WIRESERVER_IP):
            _run("ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo")
        attach = [(g.ns, g.port, g.mac, None if g.dhcp else g.address) for g in self.guests.values()]
        attach.append((self.rogue, "vethr", "02:aa:00:00:00:66", f"{SUBNET}.66"))
        for guest_ns, port, mac, static in attach:
            self._namespace(guest_ns)
            _run("ip", "-n", ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                 "address", mac, "netns", guest_ns)
            _run("ip", "-n", ns, "link", "set", port, "master", "br0")
            _run("ip", "-n", ns, "link", "set", port, "up")
            _run("ip", "-n", guest_ns, "link", "set", "eth0", "up")
            if static:
                # What the guest's OS DHCP client would have set up (waagent finds the route to
                # 168.63.129.16 in /proc/net/route and skips its own DHCP, §1.2).
                _run("ip", "-n", guest_ns, "addr", "add", f"{static}/24", "dev", "eth0")
                for target in (IMDS_IP, WIRESERVER_IP):
                    _run("ip", "-n", guest_ns, "route", "add", f"{target}/32", "via", HOST)
                _run("ip", "-n", guest_ns, "route", "add", "default", "via", HOST)
        self._start_dnsmasq()
        self._start_azimds()

    def _start_dnsmasq(self) -> None:
        hosts = []
        for guest in self.guests.values():
            if guest.dhcp:
                hosts += [f"--dhcp-host={guest.mac},{guest.address}"]
        lease = self.workroot / "dnsmasq.leases"
        cmd = [
            "ip", "netns", "exec", self.host, "dnsmasq", "--keep-in-foreground",
            "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=br0",
            "--bind-interfaces", "--no-resolv", "--no-hosts",
            f"--dhcp-range={SUBNET}.100,{SUBNET}.150,255.255.255.0,1h",
            f"--dhcp-leasefile={lease}", "--dhcp-authoritative",
            f"--dhcp-option=3,{HOST}",
            # §1.3: both services and a default route (RFC 3442: 121 replaces the router option).
            f"--dhcp-option=121,{WIRESERVER_IP}/32,{HOST},{IMDS_IP}/32,{HOST},0.0.0.0/0,{HOST}",
            # §1.3: 245 sent whether asked for or not.
            f"--dhcp-option-force=245,{WIRESERVER_IP}",
            *hosts,
        ]
        log = open(self.workroot / "dnsmasq.log", "wb")
        self.processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def _start_azimds(self) -> None:
        log = open(self.workroot / "azimds.log", "wb")
        self.azimds_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.host, str(self.binary), "serve",
             "--listen", f"{IMDS_IP}:80", "--wireserver-listen", f"{WIRESERVER_IP}:80",
             "--callers", "source-address", "--rate-limit", "0",
             "--vms", str(VMS_FILE), "--data", str(self.data),
             "--control", f"unix:{self.socket}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**_clean_env(), "AZIMDS_LOG": "info"},
        )
        log.close()
        self.processes.append(self.azimds_proc)
        deadline = time.monotonic() + 30
        while "azimds guest plane listening" not in self.log():
            if self.azimds_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"azimds did not start:\n{self.log()}")
            time.sleep(0.05)

    # ---------------------------------------------------------------- use
    def log(self) -> str:
        return (self.workroot / "azimds.log").read_text(errors="replace")

    def azimds(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """The azimds CLI against this server's control socket."""
        return _run(str(self.binary), *args, "--control", f"unix:{self.socket}",
                    timeout=timeout, check=check)

    def provisioning(self, vm_id: str) -> dict:
        return json.loads(self.azimds("vm", "provisioning", vm_id, "--json").stdout)

    def close(self) -> None:
        for guest in self.guests.values():
            guest.stop()
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for name in reversed(self.namespaces):
            _kill_namespace(name)
        for guest in self.guests.values():
            if guest.loop:
                _run("losetup", "--detach", guest.loop, check=False)


def require_tools() -> list:
    """What the provisioning suite needs that might be missing (each is a failure)."""
    return [tool for tool in ("ip", "dnsmasq", "losetup", "unshare", "xorriso", "curl", "dhclient")
            if shutil.which(tool) is None]
