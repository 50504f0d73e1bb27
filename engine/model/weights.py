"""Checkpoint files: find, verify and download them safely.

Guarantees:
- A checkpoint only appears at its final path after its size and SHA-256 were checked: the body is
  streamed to a temporary ``.part`` file in the same folder and renamed into place (atomic on POSIX).
- A failed, interrupted or wrong download leaves nothing at the final path, and its temporary file
  is removed (by the next download if the process was killed).
- Two processes downloading the same file serialise on a lock file (``.<name>.lock`` next to it);
  the second one then finds the finished, verified file and does not download again.
- A file already at the final path is verified (size, then SHA-256) before it is used; a corrupt
  one is removed with a warning and downloaded again.
- Offline, the error comes at once (nothing is retried) and names the file, the URL and where a
  manually downloaded copy must be put. A server that stops sending data is given up after
  ``timeout`` seconds.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import logging
import os
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional

from .table import ModelSpec

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0  # seconds without a byte before a download is abandoned
HTML_TYPES = ("text/html", "application/xhtml+xml")
HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, downloaded, verified or loaded."""


class _SaveError(Exception):
    """An ``OSError`` while writing the checkpoint locally (not a network error)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, spec: ModelSpec) -> Optional[str]:
    """Check size then SHA-256 of ``path`` against ``spec``; return ``None`` if good, else why not."""
    size = Path(path).stat().st_size
    if size != spec.size:
        return f"size {size} bytes, expected {spec.size}"
    digest = sha256_of(path)
    if digest != spec.sha256:
        return f"SHA-256 {digest}, expected {spec.sha256}"
    return None


def weight_file_problem(path: str, spec: ModelSpec) -> Optional[str]:
    """Why ``model_weight_file`` = ``path`` cannot be used for ``spec`` (``None``: a file)."""
    file = Path(path).expanduser()
    if file.is_file():
        return None
    return (f"model_weight_file: {file} does not exist; expected the path of a {spec.name} "
            f"checkpoint ({spec.filename}), or empty to use the official download.")


def manual_hint(spec: ModelSpec, final: Path) -> str:
    """What a user without network access can do instead."""
    return (f"To install it by hand, download {spec.url} on a machine with internet access and "
            f"copy it to {final} (or set model_weight_file to the path of your copy).")


def _save_problem(error: OSError, spec: ModelSpec) -> str:
    """What went wrong writing a checkpoint into its folder and what to do about it."""
    what = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = f"Free at least {spec.size / 1e6:.0f} MB of disk space there"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "Make the folder writable"
    elif error.errno in (errno.ENOTDIR, errno.EEXIST):
        advice = "The path must be a folder"
    else:
        advice = "Check that the folder is writable and the disk has space"
    return f"{what} [errno {error.errno}]. {advice}"


def _save_error(error: OSError, spec: ModelSpec, final: Path) -> CheckpointError:
    return CheckpointError(f"Cannot save checkpoint {final.name} into {final.parent}: "
                           f"{_save_problem(error, spec)}; nothing was saved at "
                           f"{final}. {manual_hint(spec, final)}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``path`` (POSIX flock; a no-op where fcntl is missing).

    The lock is released by the kernel when the process dies, so a crashed download never blocks
    the next one.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no inter-process lock, the atomic rename still holds
        yield
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Another process is downloading into %s: waiting for it", path.parent)
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
        url: source URL (``http(s)://`` or ``file://``), ``spec.url`` by default.
        timeout: seconds to wait for a connection or for the next bytes.
        on_progress: optional ``callback(bytes_done, bytes_total)``.
    Raises:
        CheckpointError: with what went wrong and what the user can do.
    """
    url = url or spec.url
    final = Path(final)
    hint = manual_hint(spec, final)
    failed = f"Cannot download checkpoint {final.name} from {url}"
    nothing = f"nothing was saved at {final}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as exc:
        raise _save_error(exc, spec, final) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, spec, timeout, on_progress, failed, nothing, hint)
        try:
            problem = verify_file(tmp, spec)
        except OSError as exc:
            raise _SaveError(exc) from exc
        if problem:
            raise CheckpointError(f"{failed}: the downloaded file is not the expected checkpoint "
                                  f"({problem}); {nothing}. Try again later; if it persists, the "
                                  f"URL serves another file. {hint}")
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise _SaveError(exc) from exc
    except CheckpointError:
        raise
    except _SaveError as exc:
        raise _save_error(exc.error, spec, final) from exc.error
    except urllib.error.HTTPError as exc:
        raise CheckpointError(f"{failed}: the server answered HTTP {exc.code} {exc.reason}; "
                              f"{nothing}. Check the URL or try again later. {hint}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            what = f"no answer within {timeout:g} s"
        elif isinstance(reason, socket.gaierror):
            what = f"the host name cannot be resolved ({reason})"
        elif urllib.parse.urlsplit(url).scheme == "file":
            raise CheckpointError(f"{failed}: cannot read the file ({reason}); {nothing}. Check "
                                  f"the path. {hint}") from exc
        else:
            what = f"cannot connect ({reason})"
        raise CheckpointError(f"{failed}: {what}; {nothing}. This machine seems to be offline or "
                              f"behind a proxy: check the network connection. {hint}") from exc
    except (TimeoutError, socket.timeout) as exc:
        raise CheckpointError(f"{failed}: the server sent no data for {timeout:g} s; {nothing}. "
                              f"Check the network connection and try again. {hint}") from exc
    except (http.client.HTTPException, ConnectionError, OSError) as exc:
        raise CheckpointError(f"{failed}: the connection broke ({type(exc).__name__}: {exc}); "
                              f"{nothing}. Try again. {hint}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    logger.info("Checkpoint %s downloaded from %s and verified", final, url)
    return final


def _looks_like_html(block: bytes) -> bool:
    return block.lstrip()[:20].lower().startswith(HTML_STARTS)


def _stream(url: str, out, spec: ModelSpec, timeout: float,
            on_progress: Optional[Callable[[int, int], None]], failed: str, nothing: str,
            hint: str) -> None:
    """Copy ``url``'s body into ``out``; refuse HTML pages, wrong sizes and short bodies."""
    tail, tail_retry = f"{nothing}. {hint}", f"{nothing}. Try again. {hint}"
    request = urllib.request.Request(url, headers={"User-Agent": "infer_segment_anything_2"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        html = (f"{failed}: the server sent a web page instead of the checkpoint (an error or "
                f"login page, HTTP status {getattr(response, 'status', None) or 'OK'}); {tail}")
        if ctype in HTML_TYPES:
            raise CheckpointError(html)
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.strip().isdigit() else None
        if announced is not None and announced != spec.size:
            raise CheckpointError(f"{failed}: the server announces {announced} bytes, expected "
                                  f"{spec.size}; {tail}")
        total = spec.size
        bar = _progress_bar(total, spec.filename)
        done = 0
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                if done == 0 and _looks_like_html(block):
                    raise CheckpointError(html)
                done += len(block)
                if done > spec.size:
                    raise CheckpointError(f"{failed}: the server sent more than the expected "
                                          f"{spec.size} bytes; {tail}")
                try:
                    out.write(block)
                except OSError as exc:
                    raise _SaveError(exc) from exc
                if bar is not None:
                    bar.update(len(block))
                if on_progress is not None:
                    on_progress(done, total)
        finally:
            if bar is not None:
                bar.close()
        if done < spec.size:
            raise CheckpointError(f"{failed}: the connection closed after {done} of {spec.size} "
                                  f"bytes (truncated download); {tail_retry}")
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise _SaveError(exc) from exc


def ensure_checkpoint(spec: ModelSpec, folder: Path, url: Optional[str] = None,
                      timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Return the verified path of ``spec``'s checkpoint in ``folder``, downloading it if missing.

    A file already at the final path is checked (size, then SHA-256, once per process and file
    state) before it is used; a corrupt one is removed with a warning and downloaded again. A valid
    file is used even when ``folder`` is read-only.
    """
    folder = Path(folder)
    final = folder / spec.filename
    if _is_verified(final) or _check_existing(final, spec) is None:
        return final
    with contextlib.ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_file_lock(folder / f".{spec.filename}.lock"))
        except OSError as exc:
            raise _save_error(exc, spec, final) from exc
        _remove_stale_parts(folder, spec)
        # Another process may have finished (or replaced) the file while we waited for the lock.
        problem = _check_existing(final, spec)
        if problem is None:
            return final
        removed = ""
        if problem != "missing":
            logger.warning("Checkpoint %s is corrupt (%s): removing it and downloading %s again",
                           final, problem, url or spec.url)
            try:
                final.unlink()
            except OSError as exc:
                raise CheckpointError(f"Checkpoint {final} is corrupt ({problem}) and cannot be "
                                      f"removed: {_save_problem(exc, spec)}. Delete it and "
                                      f"try again. {manual_hint(spec, final)}") from exc
            removed = f" The corrupt file that was at {final} ({problem}) was removed."
        try:
            download(spec, final, url=url, timeout=timeout)
        except CheckpointError as exc:
            if not removed:
                raise
            raise CheckpointError(f"{exc}{removed}") from exc
        _VERIFIED.add(_state(final))
        return final


def _remove_stale_parts(folder: Path, spec: ModelSpec) -> None:
    """Delete temporary files left by a download that was killed (called with the lock held, so
    no live download of this checkpoint owns them)."""
    for part in folder.glob(f".{spec.filename}.*.part"):
        with contextlib.suppress(OSError):
            part.unlink()
            logger.info("Removed %s, left by an interrupted download", part)


_VERIFIED: set = set()


def _state(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _is_verified(path: Path) -> bool:
    """``path`` was verified in this process and has not changed since."""
    try:
        return _state(path) in _VERIFIED
    except OSError:
        return False


def _check_existing(final: Path, spec: ModelSpec) -> Optional[str]:
    """``None`` when ``final`` is a verified checkpoint, ``"missing"``, or what is wrong with it."""
    try:
        if not final.is_file():
            return "missing"
        problem = verify_file(final, spec)
    except OSError as exc:
        return f"unreadable: {exc}"
    if problem is None:
        _VERIFIED.add(_state(final))
    return problem
