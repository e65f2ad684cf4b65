"""What every lab module shares: a lab's error, its child processes, free ports and the
Debian binaries it needs (mendloop/servicelab.py starts them, mendloop/labclient.py talks to
the daemon among them)."""

from __future__ import annotations

import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import MendloopError


class LabError(MendloopError):
    """A lab process did not start, became unready, or an awaited state never came."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need(binary: str, package: str) -> str:
    """The binary's path, or LabError naming the Debian package to install."""
    if not Path(binary).exists():
        raise LabError(f"{binary} is missing: apt-get install -y {package}")
    return binary


@dataclass
class Proc:
    """One child process of the lab and its log."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """A crash, as the service would suffer it (SIGKILL by default)."""
        if self.alive:
            self.popen.send_signal(sig)
            self.popen.wait(30)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
