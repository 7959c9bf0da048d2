"""Commands a benchmark runs as a person would: timed, with their CPU and memory.

Each command starts in a session of its own, so every process it forks can
be found (and killed) by that session's id. CPU time and memory are read
from /proc (Linux): a process's `utime + stime`, plus `cutime + cstime` for
the children it has reaped, summed over the session, counts every process
the command ran, ended or not.
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.2


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its 3rd field (state) on; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def session_pids(session: int) -> list[int]:
    """The processes of one session (its leader's pid), alive or zombie."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[3]) == session:
                pids.append(int(entry.name))
    return pids


def session_cpu_seconds(session: int) -> float:
    """CPU seconds of a session's processes and of the children they reaped."""
    ticks = 0
    for pid in session_pids(session):
        fields = _stat(pid)
        if fields:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def _kb(path: str, *keys: str) -> dict[str, int]:
    """Fields such as `VmHWM:  1234 kB` of a /proc file, in kB."""
    found = {}
    try:
        with open(path) as file:
            for line in file:
                key, _, value = line.partition(":")
                if key in keys:
                    found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


_OWN_CMDLINE = Path("/proc/self/cmdline").read_bytes()


def session_memory(session: int) -> dict:
    """Processes, their memory now (PSS: shared pages split among them), and
    the largest peak RSS (VmHWM) among them.

    A child not yet past exec() still has its parent's memory; it is left
    out, as are zombies.
    """
    pss = peak = processes = 0
    for pid in session_pids(session):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == _OWN_CMDLINE:
                continue
        except OSError:
            continue
        status = _kb(f"/proc/{pid}/status", "VmHWM")
        if not status:
            continue
        processes += 1
        peak = max(peak, status["VmHWM"])
        rollup = _kb(f"/proc/{pid}/smaps_rollup", "Pss", "Rss")
        pss += rollup.get("Pss", rollup.get("Rss", 0))
    return {"processes": processes, "pss_mb": pss / 1024, "peak_mb": peak / 1024}


class MemoryWatch:
    """The most of session_memory() seen over repeated looks."""

    def __init__(self, session: int):
        self.session = session
        self.most = {"processes": 0, "pss_mb": 0.0, "peak_mb": 0.0}

    def look(self) -> None:
        for key, value in session_memory(self.session).items():
            self.most[key] = max(self.most[key], value)


class StepFailed(Exception):
    pass


def run_measured(argv: list[str], *, cwd, env: dict, log: Path, timeout: float) -> dict:
    """Run a command to its end; its wall time, CPU and memory.

    seconds: from the start of the process to its exit; cpu_seconds: the
    process and every child it waited for (wait4); sampled every 0.2 s:
    peak_mb, the largest peak RSS of any one of its processes, pss_mb, the
    most memory they held together, and processes, the most at once.
    (wait4's ru_maxrss would not do: Linux counts the memory of the parent
    that forked the child in it.) Output goes to `log`.
    """
    with open(log, "ab") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ended = {}

    def reap():
        ended["result"] = os.wait4(process.pid, 0)
        ended["at"] = time.perf_counter()

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    memory = MemoryWatch(process.pid)
    while reaper.is_alive():
        memory.look()
        if time.perf_counter() - started > timeout:
            kill_session(process.pid)
            reaper.join()
            process.returncode = -signal.SIGKILL
            raise StepFailed(f"{' '.join(argv[1:3])}: no end after {timeout:.0f} s")
        reaper.join(SAMPLE_SECONDS)
    _, status, usage = ended["result"]
    process.returncode = os.waitstatus_to_exitcode(status)
    kill_session(process.pid)  # anything it left behind
    if process.returncode:
        raise StepFailed(
            f"{' '.join(argv[1:3])} exited {process.returncode}: {log_tail(log)}"
        )
    return {
        "seconds": ended["at"] - started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        **memory.most,
    }


def kill_session(session: int) -> None:
    try:
        os.killpg(session, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_session(process: subprocess.Popen, *, grace: float = 30) -> bool:
    """SIGTERM to the leader, SIGKILL to the session after `grace` seconds.

    True when the leader ended on its own within the grace period.
    """
    clean = True
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            clean = False
    kill_session(process.pid)
    process.wait()
    return clean


def log_tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
