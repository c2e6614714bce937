"""A loopback stand-in for the Hugging Face Hub's resolve endpoints (docs/formats.md §4), for
llmc's download tests. Standard library only. Serves every folder REPOS/<org>/<name>/ as a
model repo at one fixed commit:

  HEAD/GET /<org>/<name>/resolve/<rev>/<file>   (rev: main or the commit, else 404)
      regular files: 200 with ETag = git blob sha1, X-Repo-Commit, Content-Length
      LFS files (*.safetensors, *.bin): 302 to http://localhost:<port>/cdn/<sha256> with
      X-Linked-Etag = sha256, X-Linked-Size, X-Repo-Commit
  GET /cdn/<sha256>   the content, with Range; refuses any Authorization header (400)

Failure injection by repo name: "flaky" answers 503 once per file; org "gated" needs "Authorization: Bearer good" (else 401);
name "cut" drops the connection halfway through the first CDN download; name "corrupt"
serves wrong bytes from the CDN. Prints the port on stdout, then serves until killed.
  /usr/bin/python3 tests/hub_server.py REPOS
"""
import hashlib
import http.server
import os
import sys

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROOT = sys.argv[1]
CUT_DONE = set()
FLAKY_DONE = set()
BY_SHA = {}


def is_lfs(name):
    return name.endswith(".safetensors") or name.endswith(".bin")


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, headers, body=b"", head=False):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _resolve(self, head):
        parts = self.path.split("/")
        # ['', org, name, 'resolve', rev, file...]
        if len(parts) < 6 or parts[3] != "resolve":
            return self._send(404, {}, b"not found", head)
        org, name, rev, fname = parts[1], parts[2], parts[4], "/".join(parts[5:])
        if rev not in ("main", COMMIT):
            return self._send(404, {"X-Error-Code": "RevisionNotFound"}, b"no such revision", head)
        repo = os.path.join(ROOT, org, name)
        if org == "gated" and self.headers.get("Authorization") != "Bearer good":
            return self._send(401, {}, b"gated", head)
        path = os.path.join(repo, fname)
        if not os.path.isdir(repo):
            return self._send(404, {"X-Error-Code": "RepoNotFound"}, b"no repo", head)
        if name == "flaky" and fname not in FLAKY_DONE:  # one 503 per file first
            FLAKY_DONE.add(fname)
            return self._send(503, {}, b"busy", head)
        if not os.path.isfile(path):
            return self._send(404, {"X-Error-Code": "EntryNotFound"}, b"missing", head)
        data = open(path, "rb").read()
        if is_lfs(fname):
            sha = hashlib.sha256(data).hexdigest()
            BY_SHA[sha] = (data, name)
            # The CDN is another host name for the same server, as for the real hub.
            port = self.server.server_address[1]
            return self._send(302, {"Location": "http://localhost:%d/cdn/%s" % (port, sha), "X-Linked-Etag": '"%s"' % sha,
                                    "X-Linked-Size": str(len(data)), "X-Repo-Commit": COMMIT}, b"", head)
        return self._send(200, {"ETag": '"%s"' % git_sha1(data), "X-Repo-Commit": COMMIT,
                                "Content-Length": str(len(data))}, data, head)

    def _cdn(self, head):
        if self.headers.get("Authorization"):
            return self._send(400, {}, b"token sent to the CDN", head)
        sha = self.path.split("/")[-1]
        if sha not in BY_SHA:
            return self._send(404, {}, b"no such blob", head)
        data, name = BY_SHA[sha]
        if name == "corrupt":
            data = b"x" * len(data)
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        code = 206 if start else 200
        headers = {"Content-Length": str(len(body))}
        if start:
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
        if name == "cut" and sha not in CUT_DONE:
            CUT_DONE.add(sha)
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        return self._send(code, headers, body, head)

    def do_HEAD(self):
        return self._cdn(True) if self.path.startswith("/cdn/") else self._resolve(True)

    def do_GET(self):
        return self._cdn(False) if self.path.startswith("/cdn/") else self._resolve(False)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
