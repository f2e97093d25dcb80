"""The knowledge corpus: reading documents from files, folders and JSONL, hashing them, and cutting
them into overlapping chunks of the embedder's tokens."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Chunk:
    id: str  # "<doc id>#<n>"
    doc_id: str
    title: str | None
    text: str

    @property
    def passage(self) -> str:
        """What the embedder and the model see: a chunk cut from mid-document often does not name
        its subject, so the document title goes first."""
        return f"[{self.title}] {self.text}" if self.title else self.text


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HarnessError(str(path), f"cannot be read: {e.strerror or e}") from None
    if b"\x00" in raw:
        raise HarnessError(str(path), "is a binary file, not text; remove it from the corpus or list the text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(str(path), f"not UTF-8 text (byte {e.start}); re-save it as UTF-8 or leave it out") from None


def _jsonl_documents(path: Path) -> list[Document]:
    docs = []
    for i, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarnessError(f"{path}: line {i}", f"not valid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: line {i}", "expected an object with 'id' and 'text'")
        for key in ("id", "text"):
            if not str(row.get(key) or "").strip():
                raise HarnessError(f"{path}: line {i}", f"missing or empty field '{key}'")
        docs.append(Document(str(row["id"]), row["text"], row.get("title"), row.get("source")))
    return docs


def read_corpus(entries: list[str], base_dir: Path, where: str = "corpus") -> list[Document]:
    """Every document of the corpus, in a stable order.

    A .jsonl file holds one document per line; any other file is one document whose id is its path
    (relative to the folder it was listed from). Folders are read recursively, hidden files skipped.
    Empty, unreadable and binary input is refused with the file named: indexing it would leave
    questions with nothing, or noise, to retrieve."""
    docs = []
    for entry in entries:
        path = (base_dir / entry).resolve()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            root = path
        elif path.is_file():
            files, root = [path], path.parent
        else:
            raise HarnessError(f"{where}: {entry}", f"not found: {path}")
        for f in files:
            if f.suffix == ".jsonl":
                docs.extend(_jsonl_documents(f))
                continue
            text = _read_text(f)
            if text.strip():
                rel = f.relative_to(root).as_posix()
                docs.append(Document(rel, text, f.stem, rel))
    if not docs:
        raise HarnessError(where, "the corpus is empty: no document has any text")
    seen = set()
    for d in docs:
        if d.id in seen:
            raise HarnessError(where, f"duplicate document id '{d.id}'")
        seen.add(d.id)
    return docs


def corpus_hash(docs: list[Document]) -> str:
    digest = hashlib.sha256()
    for d in docs:
        digest.update(json.dumps(asdict(d), sort_keys=True).encode() + b"\n")
    return digest.hexdigest()[:16]


def chunk_documents(docs: list[Document], tokenizer, size: int, overlap: int) -> list[Chunk]:
    """Windows of `size` tokens, each starting `size - overlap` tokens after the previous one.

    Chunks are cut from the original text at token boundaries (through the tokenizer's offsets),
    not decoded from ids, which would lowercase or respace the text for many embedders."""
    enc = tokenizer([d.text for d in docs], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    chunks = []
    for doc, offsets in zip(docs, enc["offset_mapping"]):
        start, n = 0, 0
        while start < len(offsets):
            window = offsets[start:start + size]
            chunks.append(Chunk(f"{doc.id}#{n}", doc.id, doc.title, doc.text[window[0][0]:window[-1][1]]))
            if start + size >= len(offsets):
                break
            start += size - overlap
            n += 1
    return chunks
