"""The tuning database's lock: concurrent tile books merge, a second tuner waits and says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tridesign.atomic import file_lock
from tridesign.compiler.tvm.tuning import database_lock
from tridesign.kernels.conv_tiles import LOCK_FILE, TileBook

SAVE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tridesign.kernels.conv_tiles import TileBook
    db, key, start = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    book = TileBook.load(db)                     # both load before either saves
    (db / f"loaded-{key}").touch()
    while not all((db / f"loaded-{k}").exists() for k in ("a", "b")):
        pass
    book.entries[key] = {"tile": [8, 8, 0, 1, 0], "ms": {}}
    book.save()
""")


def test_two_processes_saving_tile_books_keep_both_measurements(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", SAVE, str(db), key, str(db)]) for key in ("a", "b")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert set(TileBook.load(db).entries) == {"a", "b"}  # the second save merged the first's entry


def test_a_second_tuner_waits_for_the_database_and_says_so(tmp_path: Path, capsys) -> None:
    db = tmp_path / "db"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from tridesign.atomic import file_lock
        with file_lock(Path({str(db / LOCK_FILE)!r})):
            Path({str(tmp_path / 'held')!r}).touch()
            time.sleep(1.5)
    """)])
    while not (tmp_path / "held").exists():
        time.sleep(0.05)
    started = time.perf_counter()
    with database_lock(db):
        waited = time.perf_counter() - started
    assert holder.wait(timeout=30) == 0
    assert waited > 0.5 and "waiting for another tuning run" in capsys.readouterr().err
    with database_lock(db, shared=True), file_lock(db / LOCK_FILE, shared=True):  # readers share it
        pass
