"""Every `build/apps/<tool> ...` command in README.md and docs/*.md is accepted by that tool's
flag parser: run with LLMC_PARSE_ONLY=1, a tool parses its flags (and its --config file) and
exits 0 without running. A command whose flags drifted from the tool fails here.
    doc_commands_test.py SOURCE_DIR BIN_DIR"""
import glob
import os
import re
import shlex
import subprocess
import sys

src, bin_dir = sys.argv[1], sys.argv[2]
TOOLS = {"quantize", "prune", "distill", "pipeline", "evaluate"}


def commands(path):
    """The commands of a Markdown file: each starts at build/apps/<tool> and runs to the end of
    its line (joining lines that end in a backslash), a closing backtick, &&, ; or a comment."""
    lines, start, joined = [], None, ""
    for lineno, raw in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
        start = lineno if start is None else start
        if raw.endswith("\\"):
            joined += raw[:-1] + " "
            continue
        lines.append((start, joined + raw))
        start, joined = None, ""
    for lineno, line in lines:
        for m in re.finditer(r"build/apps/([a-z_]+)", line):
            rest = line[m.start():]
            rest = re.split(r"`|&&|;|\|", rest)[0]
            yield lineno, m.group(1), shlex.split(rest, comments=True)


found, failed = 0, 0
seen_tools = set()
files = [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md")))
for path in files:
    for lineno, tool, argv in commands(path):
        where = "%s:%d" % (os.path.relpath(path, src), lineno)
        found += 1
        if tool not in TOOLS:
            failed += 1
            print("FAIL %s: no executable named %s" % (where, tool))
            continue
        seen_tools.add(tool)
        env = dict(os.environ, LLMC_PARSE_ONLY="1", LLMC_NO_REEXEC="1")
        r = subprocess.run([os.path.join(bin_dir, tool)] + argv[1:], cwd=src, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            failed += 1
            print("FAIL %s: %s exits %d\n  %s" % (where, " ".join(argv), r.returncode, r.stderr.strip()[-400:]))
if seen_tools != TOOLS:
    failed += 1
    print("FAIL the README shows no example of: %s" % ", ".join(sorted(TOOLS - seen_tools)))
print("doc_commands_test: %d commands, %d failed" % (found, failed))
sys.exit(1 if failed or found < 10 else 0)
