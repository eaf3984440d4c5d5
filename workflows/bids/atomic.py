"""Atomic writes: a derivative is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_copy", "atomic_path", "atomic_save_nifti", "atomic_write"]

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, keep_identical: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync and ``os.replace`` it.

    For writers that take a file name (``nibabel``'s ``to_filename``,
    ``DataFrame.to_csv``). The temporary name keeps the final extension
    (``.tmp.nii.gz``) so format inference still works. On an exception the
    temporary file is removed and ``path`` is left untouched.

    With ``keep_identical`` (the default), a ``path`` whose bytes equal the new
    content is left as it is (its modification time too), so a rerun that
    reproduces a derivative does not make what was drawn from it look stale.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "t.tsv"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("a\\tb\\n")
    >>> out.read_text()
    'a\\tb\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name.split('.')[0]}.", suffix=".tmp" + "".join(path.suffixes),
        dir=path.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if keep_identical and path.is_file() and filecmp.cmp(tmp, path, shallow=False):
            os.unlink(tmp)
            return
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, keep_identical: bool = True,
                 **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success, fsync and ``os.replace`` it.

    Readers never see a half-written ``path``: either the old file (or none)
    or the complete new one. On an exception the temporary file is removed
    and ``path`` is left untouched.

    Parameters
    ----------
    path : path-like
        Final location. Its parent directory is created if needed.
    mode : {"w", "wb"}
        Text or binary.
    keep_identical : bool
        Leave ``path`` untouched when it already holds the same bytes (see
        :func:`atomic_path`).
    **open_kwargs
        Passed to :func:`open` (e.g. ``newline``); text defaults to UTF-8.

    Yields
    ------
    file object
        Open handle on the temporary file.

    Raises
    ------
    ValueError
        If ``mode`` is not ``"w"`` or ``"wb"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_write(out) as f:
    ...     _ = f.write("hello")
    >>> out.read_text()
    'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"'mode' must be 'w' or 'wb'. Got {mode!r}.")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path, keep_identical=keep_identical) as tmp, \
            open(tmp, mode, **open_kwargs) as handle:
        yield handle


def atomic_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fsrc, atomic_write(dst, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst)


def atomic_save_nifti(src: Path, dst: Path) -> None:
    import nibabel as nib

    img = nib.load(src)
    with atomic_path(dst) as tmp:
        img.to_filename(tmp)
