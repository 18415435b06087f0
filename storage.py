"""Study storage every node can reach: a shared folder or a URI that ``pyarrow.fs`` resolves.

A study on a cluster whose nodes share no disk keeps its runs here (the Ray Train convention):
each run works in node-local scratch, and :meth:`Storage.push` mirrors its folder here at every
checkpoint and when it ends, so a rerun on any node :meth:`Storage.pull`\\ s it back and resumes.
Files are copied one by one (object stores have no folders); a checkpoint's ``COMPLETE`` marker
is copied after its other files, so a half-copied checkpoint never looks complete.

Example:
    >>> storage = Storage("s3://bucket/studies/svb")       # or "/mnt/shared/svb", "gs://..."
    >>> storage.push(Path("/tmp/run"), "runs/balanced/translate/0")
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path, PurePosixPath

from rewardgym.errors import ConfigError

__all__ = ["Storage", "StorageError"]

# written last when a folder is copied: the trainer's mark of a finished checkpoint
_LAST = "COMPLETE"


class StorageError(ConfigError):
    """A storage location that cannot be resolved, reached or written."""


def _pyarrow_fs():
    try:
        import pyarrow.fs
    except ImportError:
        raise StorageError(
            "study storage needs pyarrow: pip install 'rewardgym[ray]' (or leave storage unset "
            "to keep runs in the study directory)"
        ) from None
    return pyarrow.fs


class Storage:
    """One storage location: ``uri`` is a folder path or a ``pyarrow.fs`` URI.

    Raises:
        StorageError: a URI scheme pyarrow does not know (e.g. a typo like ``s4://``).
    """

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        fs = _pyarrow_fs()
        text = os.fspath(uri)
        if "://" not in text:
            text = str(Path(text).expanduser().resolve())
        try:
            self.fs, root = fs.FileSystem.from_uri(text)
        except Exception as exc:  # pyarrow raises ArrowInvalid and friends
            raise StorageError(
                f"cannot use study storage {text!r}: {' '.join(str(exc).split())}; give a "
                "shared folder path or a URI pyarrow.fs knows (file://, s3://, gs://, hdfs://)"
            ) from None
        self.uri = text
        self.root = PurePosixPath(root)
        self._types = fs.FileType

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    def _path(self, rel: str) -> str:
        return str(self.root / rel) if rel else str(self.root)

    def check_writable(self) -> None:
        """Write and remove a probe file, so a read-only or unreachable location fails now."""
        probe = f".rewardgym-probe-{uuid.uuid4().hex}"
        try:
            self.fs.create_dir(self._path(""), recursive=True)
            with self.fs.open_output_stream(self._path(probe)) as out:
                out.write(b"ok")
            self.fs.delete_file(self._path(probe))
        except Exception as exc:
            raise StorageError(
                f"study storage {self.uri!r} is not writable: {' '.join(str(exc).split())}; "
                "every node (and this one) must be able to write there"
            ) from None

    def exists(self, rel: str) -> bool:
        """Whether a file or folder ``rel`` exists."""
        return self.fs.get_file_info(self._path(rel)).type != self._types.NotFound

    def read_text(self, rel: str) -> str:
        with self.fs.open_input_stream(self._path(rel)) as src:
            return src.read().decode("utf-8")

    def write_text(self, rel: str, text: str) -> None:
        """Write one file (whole-object writes: a reader never sees half of it on object
        stores; on a shared folder it is written beside and renamed)."""
        self._write_bytes(rel, text.encode("utf-8"))

    def _write_bytes(self, rel: str, data: bytes) -> None:
        path = PurePosixPath(self._path(rel))
        self.fs.create_dir(str(path.parent), recursive=True)
        if isinstance(self.fs, _pyarrow_fs().LocalFileSystem):
            tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, str(path))
        else:
            with self.fs.open_output_stream(str(path)) as out:
                out.write(data)

    def _files(self, rel: str) -> dict[str, int]:
        """Every file under ``rel``: relative path -> size."""
        info = self.fs.get_file_info(self._path(rel))
        if info.type == self._types.NotFound:
            return {}
        selector = _pyarrow_fs().FileSelector(self._path(rel), recursive=True)
        base = PurePosixPath(self._path(rel))
        return {
            str(PurePosixPath(i.path).relative_to(base)): i.size
            for i in self.fs.get_file_info(selector)
            if i.type == self._types.File
        }

    def push(self, local: Path, rel: str) -> None:
        """Mirror the folder ``local`` to ``rel``: copy what is new or changed, then remove what
        ``local`` no longer has (checkpoints the trainer pruned). Hidden files (locks,
        half-written checkpoints) stay behind."""
        mine = _local_files(local)
        theirs = self._files(rel)
        changed = [f for f, size in mine.items() if theirs.get(f) != size or not _immutable(f)]
        for name in sorted(changed, key=lambda f: PurePosixPath(f).name == _LAST):
            self._write_bytes(f"{rel}/{name}", (local / name).read_bytes())
        gone = sorted(set(theirs) - set(mine))
        for name in gone:
            self.fs.delete_file(self._path(f"{rel}/{name}"))
        kept = {PurePosixPath(f).parent for f in mine}
        for folder in {PurePosixPath(f).parent for f in gone} - kept:
            self._delete_empty(f"{rel}/{folder}")

    def _delete_empty(self, rel: str) -> None:
        """Remove a folder left empty (shared folders have real ones; object stores don't)."""
        if self.exists(rel) and not self._files(rel):
            self.fs.delete_dir(self._path(rel))

    def pull(self, rel: str, local: Path) -> bool:
        """Copy the folder ``rel`` into ``local`` (created); False when storage has none."""
        files = self._files(rel)
        for name in sorted(files, key=lambda f: PurePosixPath(f).name == _LAST):
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(self._path(f"{rel}/{name}")) as src:
                target.write_bytes(src.read())
        return bool(files)


def _local_files(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def _immutable(name: str) -> bool:
    """Checkpoint files never change once written: same size means same file."""
    return name.startswith("checkpoints/")
