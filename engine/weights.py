"""Checkpoint files: find, verify and download them safely.

Guarantees:
- A checkpoint only appears at its final path after its size and SHA-256 were checked: the body is
  streamed to a temporary file in the same folder and renamed into place (atomic on POSIX).
- A failed, interrupted or wrong download leaves nothing at the final path (the temporary file is
  removed).
- Two processes downloading the same file serialise on a lock file; the second one then finds the
  finished, verified file and does not download again.
- Offline, the error comes at once (connection errors are not retried) and names the file, the URL
  and where a manually downloaded copy must be put.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional

from .models import ModelSpec

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0  # seconds without a byte before a download is abandoned


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, downloaded, verified or loaded."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, spec: ModelSpec) -> Optional[str]:
    """Check size then SHA-256 of ``path`` against ``spec``; return ``None`` if good, else why not."""
    size = path.stat().st_size
    if size != spec.size:
        return f"size {size} bytes, expected {spec.size}"
    digest = sha256_of(path)
    if digest != spec.sha256:
        return f"SHA-256 {digest}, expected {spec.sha256}"
    return None


def _manual_hint(spec: ModelSpec, final: Path) -> str:
    return (f"Download {spec.url} by other means and save it as {final} "
            f"(or set model_weight_file to its path).")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``path`` (POSIX flock; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: no inter-process lock, the atomic rename still holds
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _progress_bar(total: int, name: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a requirement, but a missing bar must not stop a download
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name)


def download(spec: ModelSpec, final: Path, url: Optional[str] = None,
             timeout: float = DEFAULT_TIMEOUT,
             on_progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Download ``spec``'s checkpoint to ``final`` and verify it; nothing is left at ``final`` on error.

    Args:
        spec: the model table entry (expected size and SHA-256).
        final: destination path; its folder is created if needed.
        url: source URL, ``spec.url`` by default (tests pass a local server's URL).
        timeout: seconds to wait for a connection or for the next bytes.
        on_progress: optional ``callback(bytes_done, bytes_total)``.
    Raises:
        CheckpointError: with what went wrong and what the user can do.
    """
    url = url or spec.url
    final = Path(final)
    hint = _manual_hint(spec, final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as exc:
        raise CheckpointError(f"Cannot write checkpoint {final.name} into {final.parent}: {exc}. "
                              f"Make the folder writable or free disk space. {hint}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, spec, timeout, on_progress)
        problem = verify_file(tmp, spec)
        if problem:
            raise CheckpointError(f"Downloaded checkpoint {final.name} from {url} is corrupt "
                                  f"({problem}); nothing was saved. Try again. {hint}")
        os.replace(tmp, final)
    except CheckpointError:
        raise
    except urllib.error.HTTPError as exc:
        raise CheckpointError(f"Cannot download checkpoint {final.name} from {url}: HTTP "
                              f"{exc.code} {exc.reason}. {hint}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(f"Cannot download checkpoint {final.name} from {url}: {reason} "
                              f"(no network?). {hint}") from exc
    except OSError as exc:
        raise CheckpointError(f"Cannot write checkpoint {final.name} into {final.parent}: {exc}. "
                              f"Make the folder writable or free disk space. {hint}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    logger.info("Checkpoint %s downloaded and verified", final)
    return final


def _stream(url: str, out, spec: ModelSpec, timeout: float,
            on_progress: Optional[Callable[[int, int], None]]) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "infer_segment_anything_2"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        ctype = response.headers.get("Content-Type", "") or ""
        if ctype.startswith("text/"):
            raise CheckpointError(f"Cannot download checkpoint {spec.filename} from {url}: the "
                                  f"server sent a {ctype.split(';')[0]} page instead of the "
                                  f"checkpoint; nothing was saved. {_manual_hint(spec, Path(spec.filename))}")
        total = int(response.headers.get("Content-Length") or spec.size)
        bar = _progress_bar(total, spec.filename)
        done = 0
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                done += len(block)
                if bar is not None:
                    bar.update(len(block))
                if on_progress is not None:
                    on_progress(done, total)
                if done > spec.size:
                    raise CheckpointError(f"Downloaded checkpoint {spec.filename} from {url} is "
                                          f"larger than the expected {spec.size} bytes; nothing "
                                          f"was saved.")
        finally:
            if bar is not None:
                bar.close()


def ensure_checkpoint(spec: ModelSpec, folder: Path, url: Optional[str] = None,
                      timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Return the verified path of ``spec``'s checkpoint in ``folder``, downloading it if missing.

    A file already at the final path is checked (size, then SHA-256, once per process and file
    state); a corrupt one is deleted with a warning and downloaded again.
    """
    folder = Path(folder)
    final = folder / spec.filename
    if _is_verified(final, spec):
        return final
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _file_lock(folder / f".{spec.filename}.lock"):
            if final.exists():  # another process may have finished it while we waited
                problem = verify_file(final, spec)
                if problem is None:
                    _VERIFIED.add(_state(final))
                    return final
                logger.warning("Checkpoint %s is corrupt (%s): deleting it and downloading again",
                               final, problem)
                final.unlink()
            download(spec, final, url=url, timeout=timeout)
            _VERIFIED.add(_state(final))
            return final
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"Cannot write checkpoint {spec.filename} into {folder}: {exc}. "
                              f"{_manual_hint(spec, final)}") from exc


_VERIFIED: set = set()


def _state(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _is_verified(path: Path, spec: ModelSpec) -> bool:
    try:
        return _state(path) in _VERIFIED
    except FileNotFoundError:
        return False
