"""Build the front bundle: strip comments and blank lines from src/*.js and src/*.css,
name each output after its content hash, and write manifest.json mapping source names to
built names. Usage: python build.py SRC DIST"""
import hashlib
import json
import pathlib
import re
import shutil
import sys

COMMENTS = re.compile(r"/\*.*?\*/|^\s*//.*?$", re.S | re.M)


def build(src, dist):
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    manifest = {}
    for path in sorted(src.iterdir()):
        if path.suffix not in (".js", ".css"):
            continue
        text = COMMENTS.sub("", path.read_text())
        text = "\n".join(line.rstrip() for line in text.splitlines() if line.strip()) + "\n"
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        name = f"{path.stem}.{digest}{path.suffix}"
        (dist / name).write_text(text)
        manifest[path.name] = name
        print(f"built {path.name} -> {name}")
    (dist / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"front: {len(manifest)} files in {dist}")


if __name__ == "__main__":
    build(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
