#!/usr/bin/env python3
"""Boots a roomgate disk image under qemu and checks the appliance from outside and inside.

    image/boot-test.py IMAGE [--disk-size 4G] [--log FILE] [--upgrade DEBS_DIR]

IMAGE is a raw image from build-image.sh --serial-autologin (the checks run commands on the
serial console). The image itself is never written: the VM runs on a qcow2 overlay, made
larger than the image so the first boot's growth of the root partition shows.

From outside, over the forwarded HTTPS port: /healthz answers, with the certificate the box
generated on its first boot. Inside: no failed unit, the gateway is a notify service with a
watchdog, its setup code exists and is shown above the login prompt, the machine id and the
root file system were made and grown on the first boot. Then the gateway is frozen with
SIGSTOP: systemd's watchdog must kill and restart it (a new PID, NRestarts 1, /healthz back).
With --upgrade, image/test-upgrade.sh then runs in the VM under real systemd on DEBS_DIR's
packages (handed in on a second, read-only disk): the packages themselves start, restart
and stop the services. Last, a clean poweroff. Software emulation by default; ROOMGATE_QEMU_ACCEL=kvm uses KVM when /dev/kvm is usable.
Standard library only.
"""

import argparse
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

OVMF = "/usr/share/ovmf/OVMF.fd"


def log(msg):
    print(f"boot-test: {msg}", flush=True)


def fail(msg):
    print(f"boot-test: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return True
    except OSError:
        return False


class Serial:
    """The VM's serial console over qemu's stdin/stdout: everything it prints goes to a log,
    commands are typed at the root shell and their output cut out between markers."""

    def __init__(self, proc, log_path):
        self.proc = proc
        self.buf = ""
        self.lock = threading.Condition()
        self.logf = open(log_path, "w", encoding="utf-8", errors="replace")
        self.seq = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                with self.lock:
                    self.lock.notify_all()
                return
            text = chunk.decode("utf-8", errors="replace")
            self.logf.write(text)
            self.logf.flush()
            with self.lock:
                self.buf += text
                self.lock.notify_all()

    def wait_for(self, pattern, timeout):
        """Waits until the output since the last match matches `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        with self.lock:
            while True:
                m = rx.search(self.buf)
                if m:
                    self.buf = self.buf[m.end():]
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.lock.wait(min(left, 1.0))

    def type(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, cmd, timeout=60):
        """Runs `cmd` in the root shell; returns (exit status, output)."""
        self.seq += 1
        n = self.seq
        # The markers are split in the typed line, so its echo never matches them.
        self.type(f"echo '@@BE''GIN{n}@@'; {cmd}; echo \"@@E\"\"ND{n}@@ $?\"\n")
        m = self.wait_for(rf"@@BEGIN{n}@@\r?\n(.*?)@@END{n}@@ (\d+)", timeout)
        if m is None:
            fail(f"no answer in {timeout} s on the serial console to: {cmd}")
        out = m.group(1).replace("\r", "")
        return int(m.group(2)), out.strip()

    def check(self, cmd, timeout=60):
        status, out = self.run(cmd, timeout)
        if status != 0:
            fail(f"`{cmd}` exited {status}:\n{out}")
        return out


def healthz(port, timeout=5):
    """The body of https://127.0.0.1:port/healthz, or None; the certificate is checked below."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=timeout
        ) as r:
            return r.read().decode(errors="replace") if r.status == 200 else None
    except Exception:
        return None


def wait_healthz(port, timeout, up=True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (healthz(port) is not None) == up:
            return True
        time.sleep(2)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("--disk-size", default="4G")
    ap.add_argument("--log", default=None, help="serial console log (default next to IMAGE)")
    ap.add_argument("--boot-timeout", type=int, default=900)
    ap.add_argument("--upgrade", metavar="DEBS_DIR",
                    help="run image/test-upgrade.sh in the VM on these packages")
    args = ap.parse_args()

    for tool in ("qemu-system-x86_64", "qemu-img"):
        if not shutil.which(tool):
            fail(f"{tool} missing (apt-get install qemu-system-x86 qemu-utils)")
    if not os.path.exists(OVMF):
        fail(f"{OVMF} missing (apt-get install ovmf)")
    image = os.path.abspath(args.image)
    image_bytes = os.path.getsize(image)
    serial_log = args.log or image + ".serial.log"
    work = tempfile.mkdtemp(prefix="roomgate-boot.")
    overlay = os.path.join(work, "disk.qcow2")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image, overlay,
         args.disk_size],
        check=True,
    )
    extra_drive = []
    if args.upgrade:
        # A second disk with the packages and the script: an ext4 image made from a
        # directory (no mount, no root needed on this side).
        tree = os.path.join(work, "extra")
        os.makedirs(os.path.join(tree, "debs"))
        for name in os.listdir(args.upgrade):
            if name.endswith(".deb"):
                shutil.copy(os.path.join(args.upgrade, name), os.path.join(tree, "debs"))
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copy(os.path.join(here, "test-upgrade.sh"), tree)
        extra = os.path.join(work, "extra.img")
        size_mib = sum(os.path.getsize(os.path.join(tree, "debs", f))
                       for f in os.listdir(os.path.join(tree, "debs"))) // 2**20 * 2 + 64
        made = subprocess.run(
            ["mkfs.ext4", "-q", "-L", "upgrade", "-d", tree, extra, f"{size_mib}M"],
            capture_output=True, text=True)
        if made.returncode != 0:
            fail(f"mkfs.ext4 for the packages' disk: {made.stderr.strip()}")
        extra_drive = ["-drive", f"file={extra},if=virtio,format=raw,readonly=on"]
    port = free_port()
    http_port = free_port()
    # Software emulation unless asked: KVM inside a VM (nested) is often there but broken.
    kvm = os.environ.get("ROOMGATE_QEMU_ACCEL") == "kvm" and kvm_usable()
    accel = ["-accel", "kvm", "-cpu", "host"] if kvm else ["-accel", "tcg,thread=multi"]
    cmd = [
        "qemu-system-x86_64", "-machine", "q35", "-m", "1024", "-smp", "2", *accel,
        "-bios", OVMF,
        "-drive", f"file={overlay},if=virtio,format=qcow2", *extra_drive,
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:8443,"
                   f"hostfwd=tcp:127.0.0.1:{http_port}-:8080",
        "-device", "virtio-net-pci,netdev=n0",
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
    ]
    log(f"qemu ({'KVM' if kvm else 'software emulation'}), HTTPS forwarded to 127.0.0.1:{port}, "
        f"serial log {serial_log}")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    con = Serial(proc, serial_log)
    try:
        run_checks(con, port, http_port, image_bytes, started, args.boot_timeout, args.upgrade)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    log("all checks passed")


def plain_http_status(port, path):
    """(status, Location) of a plain-HTTP GET, redirects not followed."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Location") or ""
    finally:
        c.close()


def run_checks(con, port, http_port, image_bytes, started, boot_timeout, upgrade):
    # 1. From outside: the console answers over HTTPS on the forwarded port.
    if not wait_healthz(port, boot_timeout):
        fail(f"no /healthz over HTTPS within {boot_timeout} s (serial log above the prompt)")
    log(f"/healthz answered over HTTPS {time.monotonic() - started:.0f} s after power-on")
    served_pem = ssl.get_server_certificate(("127.0.0.1", port))
    status, location = plain_http_status(http_port, "/rooms")
    if status != 308 or not location.startswith("https://") or not location.endswith("/rooms"):
        fail(f"plain HTTP on 8080 answered {status} {location!r}, expected 308 to https://…/rooms")
    log(f"plain HTTP redirects to HTTPS ({status} {location})")

    # 2. Inside, at the autologin shell of the serial console.
    if con.wait_for(r"root@roomgate:~# ", 300) is None:
        fail("no root shell on the serial console (built without --serial-autologin?)")
    con.check("dmesg -n 1; export SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb; stty -echo cols 200")
    state = con.check("systemctl is-system-running --wait || true", timeout=300)
    failed = con.check("systemctl --failed --no-legend --plain")
    if failed:
        fail(f"failed units (system {state}):\n{failed}")
    log(f"system {state}, no failed units")

    props = dict(
        line.split("=", 1)
        for line in con.check(
            "systemctl show gateway -p Type -p ActiveState -p MainPID -p NRestarts "
            "-p WatchdogUSec -p User -p UnitFileState"
        ).splitlines()
    )
    want = {"Type": "notify", "ActiveState": "active", "NRestarts": "0",
            "User": "roomgate", "UnitFileState": "enabled"}
    for key, value in want.items():
        if props.get(key) != value:
            fail(f"gateway.service {key}={props.get(key)!r}, expected {value!r}: {props}")
    if props.get("WatchdogUSec") in (None, "0", "infinity"):
        fail(f"gateway.service has no watchdog: {props}")
    log(f"gateway.service active (notify, watchdog {props['WatchdogUSec']}, pid {props['MainPID']})")

    # First boot: a machine id, the console's certificate, the setup code on the console.
    machine_id = con.check("cat /etc/machine-id")
    if not re.fullmatch(r"[0-9a-f]{32}", machine_id):
        fail(f"machine id not made on first boot: {machine_id!r}")
    crt = con.check("cat /var/lib/roomgate/certs/console.crt")
    if ssl.PEM_cert_to_DER_cert(crt) != ssl.PEM_cert_to_DER_cert(served_pem):
        fail("the certificate served on 8443 is not /var/lib/roomgate/certs/console.crt")
    code = con.check("cat /var/lib/roomgate/setup-code")
    if not re.fullmatch(r"[A-Za-z0-9-]{8,}", code):
        fail(f"setup code looks wrong: {code!r}")
    con.check("systemctl start roomgate-console-issue.service")
    issue = con.check("cat /run/issue.d/50-roomgate.issue")
    if code not in issue or "https://" not in issue:
        fail(f"the login prompt's text lacks the console address or the setup code:\n{issue}")
    mode = con.check("stat -c '%a %U' /var/lib/roomgate/setup-code")
    if mode != "600 roomgate":
        fail(f"setup code file is {mode}, expected 600 roomgate")
    journal = con.check("journalctl -b -u gateway -o cat --no-pager | grep -ci 'setup code' || true")
    if journal == "0":
        fail("the setup code is not in the gateway's journal")
    log("first boot: machine id, certificate (the one served), setup code (file 0600, journal, "
        "login prompt)")

    root_bytes = int(con.check("findmnt -bno SIZE /"))
    if root_bytes <= image_bytes:
        fail(f"root file system not grown: {root_bytes} bytes on a disk larger than the "
             f"{image_bytes}-byte image")
    log(f"root file system grown to {root_bytes // 2**20} MiB (image {image_bytes // 2**20} MiB)")
    if con.check("passwd --status root | cut -d' ' -f2") != "L":
        fail("root's password is not locked")

    # 3. A hung gateway (SIGSTOP: the process lives, its loop does not) is restarted by the
    # watchdog, not just a dead one.
    old_pid = props["MainPID"]
    con.check(f"kill -STOP {old_pid}")
    frozen = time.monotonic()
    if not wait_healthz(port, 60, up=False):
        fail("/healthz still answers with the gateway stopped")
    if not wait_healthz(port, 240):
        fail("the gateway did not come back within 240 s of SIGSTOP")
    log(f"frozen gateway back on /healthz after {time.monotonic() - frozen:.0f} s")
    props = dict(
        line.split("=", 1)
        for line in con.check("systemctl show gateway -p MainPID -p NRestarts -p ActiveState")
        .splitlines()
    )
    if props.get("NRestarts") != "1" or props.get("MainPID") == old_pid:
        fail(f"expected one restart with a new PID after the watchdog: {props} (old pid {old_pid})")
    why = con.check("journalctl -b -u gateway -o cat --no-pager | grep -i 'watchdog timeout'")
    log(f"watchdog restart: pid {old_pid} -> {props['MainPID']} ({why.splitlines()[0].strip()})")

    # 4. The packages' install, upgrade, remove and purge under real systemd.
    if upgrade:
        con.check("mount -o ro /dev/vdb /mnt")
        out = con.check("bash /mnt/test-upgrade.sh /mnt/debs 2>&1", timeout=900)
        for line in out.splitlines():
            if line.startswith("test-upgrade:"):
                log(line)
        if "test-upgrade: all checks passed" not in out:
            fail(f"test-upgrade.sh did not pass:\n{out}")

    # 5. A clean poweroff: the gateway stops gracefully and the VM exits.
    con.type("systemctl poweroff\n")
    try:
        con.proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        fail("the VM did not power off within 180 s")
    log(f"powered off cleanly ({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
