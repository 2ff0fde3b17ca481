#!/usr/bin/env python3
"""Print each crate's module import graph and fail on a cycle.

    scripts/module-graph.py                    # every workspace member
    scripts/module-graph.py cport cport-proto  # only these (names or paths)
    scripts/module-graph.py --quiet cport      # only cycles and the verdict

A node is a module with a file of its own (`src/a.rs` or `src/a/mod.rs` is
`a`, `src/a/b.rs` is `a::b`); inline modules count as part of their file.
An edge `a -> b` means a file of `a` names a path in `b` through `crate::`,
`super::` or `self::` (in `use` lines and in inline paths), or a path into
one of its own child modules (`use child::Item`, `child::f()`). A path to an
item a module re-exports (`pub use a::Item`, in lib.rs or a mod.rs) counts
as a path to the module that defines it, so importing through a facade is
not a cycle. Declaring a child module (`mod b;`) is not an edge. Cycles are
found per crate; the exit status is 1 when any crate has one.

Plain text, no Rust parser: comments and string literals are stripped
first, and `#[cfg(test)] mod tests { use super::*; }` resolves `super` to
the file's own module, as Rust does.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip(src: str) -> str:
    """Source without comments, string and char literals (kept as spaces)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if src[i] == "\n" else "")
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and not (i and (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_files(src_dir: Path):
    """{module path (tuple): file} for every .rs file reachable as a module."""
    mods = {}
    for f in sorted(src_dir.rglob("*.rs")):
        rel = f.relative_to(src_dir).with_suffix("").parts
        if rel in (("lib",), ("main",)):
            key = ()
        elif rel[0] == "bin":
            continue  # binaries are crates of their own
        elif rel[-1] == "mod":
            key = rel[:-1]
        else:
            key = rel
        if key == () and () in mods:
            continue  # lib.rs wins over main.rs
        mods[key] = f
    return mods


USE_RE = re.compile(r"\buse\s+([^;]+);")
PATH_RE = re.compile(r"\b((?:crate|super|self)(?:\s*::\s*(?:[A-Za-z_][A-Za-z0-9_]*|\{[^;]*?\}|\*))+)")


def expand(tree: str):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (globs and aliases dropped)."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas[A-Za-z_]\w*", "", tree)

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        if cur:
            parts.append(cur)
        return parts

    def walk(s):
        if "{" not in s:
            segs = [x for x in s.split("::") if x and x != "*"]
            return [segs] if segs else [[]]
        head, rest = s.split("{", 1)
        inner = rest[: rest.rfind("}")]
        prefix = [x for x in head.split("::") if x]
        out = []
        for part in split_top(inner):
            for tail in walk(part):
                out.append(prefix + [x for x in tail if x != "self"])
        return out

    return walk(tree)


def crate_graph(crate_dir: Path):
    src_dir = crate_dir / "src"
    mods = module_files(src_dir)
    texts = {m: strip(f.read_text(encoding="utf-8", errors="replace")) for m, f in mods.items()}

    # Items each module re-exports (`pub use child::Item`): (module, name) ->
    # the module that defines it, so a path through a facade goes on to it.
    reexports = {}
    for m, text in texts.items():
        for tree in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for segs in expand(tree):
                if not segs:
                    continue
                if segs[0] == "crate":
                    base = list(segs[1:-1])
                elif segs[0] in ("self", "super"):
                    base, rest = list(m), segs
                    while rest and rest[0] in ("super", "self"):
                        base = base[:-1] if rest[0] == "super" else base
                        rest = rest[1:]
                    base += rest[:-1]
                elif tuple(list(m) + segs[:1]) in mods:
                    base = list(m) + segs[:-1]
                else:
                    continue
                reexports[(m, segs[-1])] = tuple(base)

    def resolve(segs):
        """The deepest module a path names, following re-exports."""
        segs = list(segs)
        for _ in range(8):
            best = ()
            for k in range(1, len(segs) + 1):
                if tuple(segs[:k]) in mods:
                    best = tuple(segs[:k])
            rest = segs[len(best):]
            via = reexports.get((best, rest[0])) if rest else None
            if via is None or via == best:
                return best
            segs = list(via) + rest
        return best

    edges = {m: set() for m in mods}
    for m, text in texts.items():
        # Inline modules (`mod tests { ... }`) shift what `self`/`super` mean.
        scopes = []  # (depth at open, name)
        depth = 0
        inline_at = []  # (offset, inline path) changes
        for tok in re.finditer(r"\bmod\s+([A-Za-z_]\w*)\s*\{|\{|\}", text):
            if tok.group(1):
                scopes.append((depth, tok.group(1)))
                depth += 1
            elif tok.group(0) == "{":
                depth += 1
            else:
                depth -= 1
                if scopes and scopes[-1][0] == depth:
                    scopes.pop()
            inline_at.append((tok.end(), tuple(n for _, n in scopes)))

        def inline_path(pos):
            cur = ()
            for off, path in inline_at:
                if off > pos:
                    break
                cur = path
            return cur

        found = []
        for u in USE_RE.finditer(text):
            found += [(u.start(), segs) for segs in expand(u.group(1))]
        for p in PATH_RE.finditer(text):
            found += [(p.start(), segs) for segs in expand(p.group(1))]
        # Inline paths into a child module: `child::item(...)`.
        for child in [c for c in mods if len(c) == len(m) + 1 and c[: len(m)] == m]:
            for hit in re.finditer(r"(?<![\w:])" + child[-1] + r"\s*::\s*(\w+)", text):
                if not inline_path(hit.start()):
                    found.append((hit.start(), ["self", child[-1], hit.group(1)]))
        for pos, segs in found:
            if not segs:
                continue
            here = list(m) + list(inline_path(pos))
            if segs[0] not in ("crate", "super", "self"):
                # `use child::Item` (2018 paths): a child module of this file.
                if tuple(here + segs[:1]) not in mods or here != list(m):
                    continue
                segs = ["self"] + segs
            if segs[0] == "crate":
                path, rest = [], segs[1:]
            else:
                path, rest = here, segs
                while rest and rest[0] in ("super", "self"):
                    if rest[0] == "super":
                        path = path[:-1]
                    rest = rest[1:]
            target = resolve(path + rest)
            if target != m and not (target == () and not rest and path == []):
                edges[m].add(target)
    return edges


def name(m):
    return "crate" if m == () else "::".join(m)


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def workspace_members():
    """The folders the root Cargo.toml lists under `[workspace] members`
    (read as text: no TOML parser before Python 3.11)."""
    text = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"^\[workspace\][^\[]*?^members\s*=\s*\[(.*?)\]", text, re.S | re.M)
    members = re.findall(r'"([^"]+)"', block.group(1)) if block else []
    return [d for p in members for d in sorted(ROOT.glob(p)) if (d / "Cargo.toml").is_file()]


def main(argv):
    quiet = "--quiet" in argv
    args = [a for a in argv if a != "--quiet"]
    if args:
        crates = [Path(a) if Path(a).is_dir() else ROOT / "crates" / a for a in args]
    else:
        crates = workspace_members()
        if not crates:
            print("no workspace members found in Cargo.toml", file=sys.stderr)
            return 2
    failed = []
    for crate in crates:
        if not (crate / "src").is_dir():
            print(f"{crate}: no src/ folder", file=sys.stderr)
            return 2
        edges = crate_graph(crate)
        found = cycles(edges)
        print(f"== {crate.name}: {len(edges)} modules, {'cycles: ' + str(len(found)) if found else 'no cycle'}")
        if not quiet:
            for m in sorted(edges):
                if edges[m]:
                    print(f"  {name(m)} -> {', '.join(name(t) for t in sorted(edges[m]))}")
        for comp in found:
            inside = {c: sorted(t for t in edges[c] if t in comp) for c in comp}
            print(f"  CYCLE among {', '.join(name(c) for c in comp)}:")
            for c in comp:
                print(f"    {name(c)} -> {', '.join(name(t) for t in inside[c])}")
        if found:
            failed.append(crate.name)
    if failed:
        print(f"module cycles in: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
