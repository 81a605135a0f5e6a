#!/usr/bin/env python3
"""Extracts raw HTTP test cases from public corpora into tests/corpus/*.cases (ringway's own
format, replayed by tests/corpus.rs). Only the cases are committed, never the programs they come
with. Usage (each argument is a git directory, e.g. a `git clone --bare` or a fetched mirror):

    python3 scripts/corpus/extract.py --llhttp DIR --smuggler DIR --garden DIR

Case format, one case per block:
    [case] <id>
    raw: <bytes; printable ASCII as is, \\r \\n \\t \\\\ and \\xNN escapes>
    ref: <facts from the corpus' own expected output, when it has one>
    verdict: <what ringway did; filled in by RINGWAY_CORPUS_RECORD=1 cargo test --test corpus>
"""
import argparse
import json
import re
import subprocess


def git_show(repo, path):
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True, check=True).stdout


def git_ls(repo, prefix):
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD", prefix], capture_output=True, check=True)
    return out.stdout.decode().split()


def git_head(repo):
    return subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, check=True).stdout.decode().strip()


def escape(raw: bytes) -> str:
    out = []
    for b in raw:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def write(path, header, cases):
    with open(path, "w") as f:
        f.write(header.rstrip() + "\n")
        for c in cases:
            f.write(f"\n[case] {c['id']}\nraw: {escape(c['raw'])}\n")
            if c.get("ref"):
                f.write(f"ref: {c['ref']}\n")
            f.write("verdict: ?\n")
    print(f"{path}: {len(cases)} cases")


# ---- nodejs/llhttp test/{request,response}/*.md ----

def blocks(text):
    """(meta, http block, log block) in order: each meta comment, the next ```http block, then
    the next ```log block (prose may stand between them)."""
    pos = 0
    while True:
        m = re.compile(r"<!-- meta=(\{.*?\}) -->").search(text, pos)
        if not m:
            return
        h = text.find("```http\n", m.end())
        h_end = text.find("\n```", h + 8)
        lg = text.find("```log\n", h_end)
        lg_end = text.find("\n```", lg + 7)
        if min(h, h_end, lg, lg_end) < 0:
            return
        nxt = re.compile(r"<!-- meta=").search(text, m.end())
        if nxt and nxt.start() < lg:
            pos = nxt.start()  # a meta without its own log: skip it
            continue
        yield json.loads(m.group(1)), text[h + 8 : h_end + 1], text[lg + 7 : lg_end + 1]
        pos = lg_end


def llhttp_input(text: str) -> bytes:
    # the same transformation as llhttp's md-test.ts (without inline JavaScript)
    text = re.sub(r"\n$", "", text)
    text = re.sub(r"\\(\r\n|\r|\n)", "", text)
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    text = text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t").replace("\\f", "\f")
    text = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16)), text)
    text = re.sub(r"\\([0-7]{1,3})", lambda m: chr(int(m.group(1), 8)), text)
    return text.encode("utf-8")  # the fixture hands the string to the parser as UTF-8


def llhttp_ref(log: str, meta) -> str:
    """messages=<complete count> bodies=<len,len..> error=<yes|no> [reason=..] [statuses=..] [head=yes]"""
    bodies, current, messages, error, statuses, reason = [], 0, 0, "no", [], None
    for line in log.splitlines():
        m = re.search(r"len=(\d+) span\[body\]", line)
        if m:
            current += int(m.group(1))
        if "message complete" in line:
            bodies.append(current)
            current, messages = 0, messages + 1
        if " error code=" in line:
            error = "yes"
            m = re.search(r'reason="([^"]*)"', line)
            reason = m.group(1).replace(" ", "_") if m else None
        m = re.search(r"headers complete status=(\d+)", line)
        if m:
            statuses.append(m.group(1))
    if error == "no" and current:
        bodies.append(current)  # a body that ends at EOF (no "message complete" before finish)
    ref = f"messages={messages} bodies={','.join(map(str, bodies)) or '-'} error={error}"
    if reason:
        ref += f" reason={reason}"
    if statuses:
        ref += f" statuses={','.join(statuses)}"
    if meta.get("skipBody"):
        ref += " head=yes"  # llhttp parses it as the answer to a HEAD request
    return ref


def add_host(raw: bytes) -> bytes:
    """HTTP/1.1 requests without Host get Host: corpus, so the case reaches framing checks."""
    head_end = raw.find(b"\r\n\r\n")
    head = raw if head_end < 0 else raw[:head_end]
    first = raw.find(b"\r\n")
    if first < 0 or not raw[:first].endswith(b"HTTP/1.1") or re.search(rb"\r\nhost:", head, re.I):
        return raw
    return raw[: first + 2] + b"Host: corpus\r\n" + raw[first + 2 :]


def llhttp(repo):
    out = {"request": [], "response": []}
    for kind in ("request", "response"):
        for path in git_ls(repo, f"test/{kind}/"):
            if not path.endswith(".md") or "lenient" in path or "lenitent" in path:
                continue
            text = git_show(repo, path).decode()
            for n, (meta, http, log) in enumerate(blocks(text)):
                if meta.get("type") != kind or "${" in http:
                    continue
                raw = llhttp_input(http)
                if kind == "request":
                    raw = add_host(raw)
                name = path.split("/")[-1][:-3]
                out[kind].append({"id": f"llhttp/{kind}/{name}/{n}", "raw": raw, "ref": llhttp_ref(log, meta)})
    return out


# ---- defparam/smuggler configs/*.py: Transfer-Encoding gadgets ----

def smuggler(repo):
    gadgets = {}

    class Payload:  # stands in for the tool's own class: only the header text is kept
        header = ""

    def render_template(gadget):
        p = Payload()
        p.header = gadget
        return p

    for path in git_ls(repo, "configs/"):
        if not path.endswith(".py"):
            continue
        src = git_show(repo, path).decode()
        src = src.replace("from lib.Payload import Payload", "")
        # the config's own render_template is renamed; ours keeps only the gadget text
        src = src.replace("def render_template", "def _config_render_template")
        scope = {"Payload": Payload, "render_template": render_template, "mutations": {}}
        exec(compile(src, path, "exec"), scope)  # noqa: S102 - data-only config files
        for name, p in scope["mutations"].items():
            gadgets.setdefault(p.header, f"{path.split('/')[-1][:-3]}/{name}")
    cases = []
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    for gadget, name in sorted(gadgets.items(), key=lambda kv: kv[1]):
        g = gadget.encode("latin-1")
        body = b"0\r\n\r\n" + smuggled
        cl_te = b"POST /smuggler HTTP/1.1\r\n" + g + b"\r\nHost: a\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        te_only = b"POST /smuggler HTTP/1.1\r\n" + g + b"\r\nHost: a\r\n\r\n" + body
        cases.append({"id": f"smuggler/{name}/cl-te", "raw": cl_te})
        cases.append({"id": f"smuggler/{name}/te", "raw": te_only})
    return cases


# ---- narfindustries/http-garden TROPHIES.md payloads ----

def garden(repo):
    text = git_show(repo, "TROPHIES.md").decode()
    cases, seen = [], set()
    for n, m in enumerate(re.finditer(r"Payload: `([^`]*)`", text)):
        payload = m.group(1)
        raw = payload.encode().decode("unicode_escape").encode("latin-1")
        if raw in seen or not raw:
            continue
        seen.add(raw)
        kind = "response" if raw.startswith(b"HTTP/") else "request"
        cases.append({"id": f"http-garden/trophy-{n + 1}/{kind}", "raw": raw})
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llhttp", required=True)
    ap.add_argument("--smuggler", required=True)
    ap.add_argument("--garden", required=True)
    ap.add_argument("--out", default="tests/corpus")
    a = ap.parse_args()
    ll = llhttp(a.llhttp)
    hdr = (
        "# Extracted by scripts/corpus/extract.py from nodejs/llhttp @ {commit} (MIT License, Copyright (c) 2018\n"
        "# Fedor Indutny), test/{kind}/*.md: every `{kind}` example (lenient-mode files and inline-JavaScript\n"
        "# examples skipped). `ref` summarises llhttp's expected log: completed messages, body bytes per\n"
        "# message, whether llhttp reports an error.{host}"
    )
    host = "\n# HTTP/1.1 requests without a Host field got `Host: corpus` after the request line."
    write(f"{a.out}/llhttp-requests.cases", hdr.format(commit=git_head(a.llhttp), kind="request", host=host), ll["request"])
    write(f"{a.out}/llhttp-responses.cases", hdr.format(commit=git_head(a.llhttp), kind="response", host=""), ll["response"])
    write(
        f"{a.out}/smuggler.cases",
        f"# Extracted by scripts/corpus/extract.py from defparam/smuggler @ {git_head(a.smuggler)} (MIT License,\n"
        "# Copyright (c) 2020 Evan Custodio), configs/*.py: every Transfer-Encoding gadget, each sent as a\n"
        "# CL.TE probe (Content-Length covering a chunked terminator plus a smuggled GET) and as a TE-only probe.",
        smuggler(a.smuggler),
    )
    write(
        f"{a.out}/http-garden.cases",
        f"# Extracted by scripts/corpus/extract.py from narfindustries/http-garden @ {git_head(a.garden)}\n"
        "# (GPL-3.0; the payloads are quoted as test data), TROPHIES.md: every distinct `Payload:` line.\n"
        "# Ids ending in /response are replayed as an origin's response, the rest as a client's request.",
        garden(a.garden),
    )


if __name__ == "__main__":
    main()
