"""opencode for the demo: the one on PATH, else the one in the local cache, else installed
there with npm (once; bounded in time, quiet).

    binary, note = find_or_install(env, say)   # binary None: note says why (no npm, ...)

The cache is $XDG_CACHE_HOME/factory/npm (~/.cache/factory/npm): `npm install --prefix`
puts opencode-ai (a pinned version) and its platform binary there, nothing global.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

PACKAGE = "opencode-ai@1.18.33"
INSTALL_TIMEOUT_S = 180.0


def cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "factory" / "npm"


def find_or_install(env: Mapping[str, str], say: Callable[[str], None],
                    timeout_s: float = INSTALL_TIMEOUT_S) -> tuple[str | None, str]:  # fmt: skip
    """(the opencode binary, how it was found) or (None, why there is none)."""
    on_path = shutil.which("opencode", path=env.get("PATH"))
    if on_path:
        return on_path, f"opencode on PATH ({on_path})"
    cache = cache_dir(env)
    cached = cache / "node_modules" / ".bin" / "opencode"
    if os.access(cached, os.X_OK):
        return str(cached), f"opencode from the local cache ({cached})"
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        return None, "opencode is not on PATH and npm is not either (apt-get install npm)"
    say(f"installing {PACKAGE} into {cache} with npm (once; at most {timeout_s:.0f} s) ...")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--silent",
             "--no-progress", PACKAGE],
            capture_output=True, text=True, timeout=timeout_s, check=False,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, f"npm install {PACKAGE} took over {timeout_s:.0f} s"
    except OSError as exc:
        return None, f"npm did not run: {exc}"
    if done.returncode != 0 or not os.access(cached, os.X_OK):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
        return None, f"npm install {PACKAGE} failed (exit {done.returncode}: {tail[0][:200]})"
    return str(cached), f"opencode installed into the local cache ({cached})"
