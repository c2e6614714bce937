#include "llmc/io/hub_download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/progress.h"
#include "llmc/io/hash.h"
#include "llmc/io/hf_model_dir.h"
#include "env.h"
#include "llmc/io/json_file.h"

namespace llmc::io {

namespace fs = std::filesystem;

namespace {

bool truthy(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::toupper(c); });
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

std::string endpoint() {
  std::string e = env_string("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

std::string token() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    if (auto t = env_string(name); !t.empty()) return t;
  }
  std::string path = env_string("HF_TOKEN_PATH");
  if (path.empty()) path = (fs::path(hf_home_dir()) / "token").string();
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  std::string t = read_file_head(path, 4096);  // a regular file only (never waits on a FIFO)
  t = t.substr(0, t.find('\n'));
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  return t;
}

std::string quote(const std::string& s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string host_of(const std::string& url) {
  const auto start = url.find("://");
  if (start == std::string::npos) return "";
  const auto end = url.find('/', start + 3);
  return url.substr(start + 3, end == std::string::npos ? std::string::npos : end - start - 3);
}

std::string resolve_location(const std::string& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  const auto start = base.find("://");
  const auto path = base.find('/', start + 3);
  return base.substr(0, path) + location;
}

struct Response {
  long status{0};
  std::map<std::string, std::string> headers;  // lower-case names
  CURLcode curl{CURLE_OK};
  std::string error;
  bool network_error() const { return curl != CURLE_OK; }
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  std::string line(data, size * n);
  const auto colon = line.find(':');
  if (line.rfind("HTTP/", 0) == 0) r->headers.clear();  // a new response (after 100 or redirect)
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) value.erase(value.begin());
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
    r->headers[name] = value;
  }
  return size * n;
}

struct Sink {
  FILE* file{nullptr};
  Progress* progress{nullptr};
  CURL* curl{nullptr};
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  if (s->file == nullptr) return size * n;
  long status = 0;
  curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200 && status != 206) return size * n;  // error and redirect bodies are not content
  const size_t written = std::fwrite(data, 1, size * n, s->file);
  if (s->progress != nullptr) s->progress->advance(static_cast<int64_t>(written));
  return written;
}

// One request, no redirect following. `auth` adds the bearer token.
Response request(const std::string& url, bool head, bool auth, Sink* sink, int64_t range_from) {
  Response r;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) throw Error("libcurl initialization failed");
  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept-Encoding: identity");
  headers = curl_slist_append(headers, "User-Agent: llmc");
  const std::string tok = auth ? token() : "";
  if (!tok.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + tok).c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOBODY, head ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  Sink none;
  if (sink != nullptr) sink->curl = curl;
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, sink != nullptr ? sink : &none);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const std::string range = std::to_string(range_from) + "-";
  if (range_from > 0) curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
  r.curl = curl_easy_perform(curl);
  if (r.curl != CURLE_OK) r.error = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(r.curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return r;
}

struct FileMeta {
  std::string error_code;  // X-Error-Code of a 404 (RepoNotFound, RevisionNotFound, EntryNotFound)
  std::string commit;
  std::string etag;
  int64_t size{-1};
  std::string location;  // where to GET the content
};

std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  e.erase(std::remove(e.begin(), e.end(), '"'), e.end());
  return e;
}

int backoff_ms(int attempt) {
  const std::string base = env_string("LLMC_HUB_BACKOFF_MS");
  const int b = base.empty() ? 500 : std::max(1, std::atoi(base.c_str()));
  return b * (1 << attempt);
}

constexpr int kAttempts = 5;

[[noreturn]] void unreachable(const std::string& url, const std::string& why) {
  throw ResourceError("cannot reach the Hugging Face Hub (" + url + "): " + why +
                      "\nSet HF_HUB_OFFLINE=1 to use only the local cache (" + hf_hub_cache_dir() + ").");
}

// HEAD on the resolve URL, following relative redirects only. nullopt-like: status 404 with
// `missing` set.
FileMeta file_metadata(const std::string& repo, const std::string& revision, const std::string& file, bool& missing) {
  std::string url = endpoint() + "/" + repo + "/resolve/" + quote(revision, false) + "/" + quote(file, true);
  missing = false;
  for (int attempt = 0;; ++attempt) {
    Response r = request(url, /*head=*/true, /*auth=*/true, nullptr, 0);
    if (r.network_error() || r.status >= 500) {
      if (attempt + 1 < kAttempts) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms(attempt)));
        continue;
      }
      if (r.network_error()) unreachable(url, r.error);
      throw ResourceError(url + ": the hub answered HTTP " + std::to_string(r.status) + " after " +
                          std::to_string(kAttempts) + " tries");
    }
    if (r.status == 401 || r.status == 403) {
      throw InputError("'" + repo + "' is gated or private (HTTP " + std::to_string(r.status) + " for " + url +
                       "): set HF_TOKEN to a token with access");
    }
    if (r.status == 404) {
      missing = true;
      FileMeta m;
      m.error_code = r.headers["x-error-code"];
      return m;
    }
    if (r.status >= 300 && r.status < 400 && r.headers.count("location")) {
      const std::string loc = r.headers["location"];
      if (loc.rfind("/", 0) == 0) {  // relative: a renamed repo, follow for metadata
        url = resolve_location(url, loc);
        continue;
      }
    }
    FileMeta m;
    m.commit = r.headers["x-repo-commit"];
    if (m.commit.empty()) throw InputError(url + ": no X-Repo-Commit header (the endpoint does not look like huggingface.co)");
    m.etag = normalize_etag(r.headers.count("x-linked-etag") ? r.headers["x-linked-etag"] : r.headers["etag"]);
    if (m.etag.empty() || m.etag.find('/') != std::string::npos || m.etag.find("..") != std::string::npos) {
      throw InputError(url + ": missing or unusable ETag '" + m.etag + "'");
    }
    const std::string size = r.headers.count("x-linked-size") ? r.headers["x-linked-size"] : r.headers["content-length"];
    if (!size.empty() && size.find_first_not_of("0123456789") == std::string::npos) m.size = std::stoll(size);
    m.location = r.status >= 300 && r.status < 400 && r.headers.count("location") ? resolve_location(url, r.headers["location"]) : url;
    return m;
  }
}

bool is_sha256(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// GET the content into blobs/<etag> through <etag>.incomplete, resuming with Range, following
// redirects and dropping Authorization when the host changes; verifies LFS sha256 etags.
void fetch_blob(const std::string& file, const FileMeta& meta, const fs::path& blobs, const fs::path& locks, bool show) {
  const fs::path blob = blobs / meta.etag;
  fs::create_directories(blobs);
  fs::create_directories(locks);
  const std::string lock_path = (locks / (meta.etag + ".lock")).string();
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) throw ResourceError(lock_path + ": cannot create lock");
  ::flock(lock_fd, LOCK_EX);  // another process fetching the same blob finishes first
  struct Unlock {
    int fd;
    ~Unlock() {
      ::flock(fd, LOCK_UN);
      ::close(fd);
    }
  } unlock{lock_fd};
  std::error_code ec;
  if (fs::exists(blob, ec)) return;
  const fs::path incomplete = blobs / (meta.etag + ".incomplete");
  Progress progress(file, meta.size > 0 ? meta.size : 0, show, "B");
  for (int attempt = 0;; ++attempt) {
    int64_t have = fs::exists(incomplete, ec) ? static_cast<int64_t>(fs::file_size(incomplete, ec)) : 0;
    if (meta.size >= 0 && have > meta.size) {
      fs::remove(incomplete, ec);
      have = 0;
    }
    if (meta.size >= 0 && have == meta.size && have > 0) break;  // complete from an earlier try
    std::string url = meta.location;
    bool auth = host_of(url) == host_of(endpoint());
    Response r;
    for (int hop = 0; hop < 10; ++hop) {
      FILE* f = std::fopen(incomplete.c_str(), have > 0 ? "ab" : "wb");
      if (f == nullptr) throw ResourceError(incomplete.string() + ": cannot write");
      Sink sink{f, &progress, nullptr};
      r = request(url, false, auth, &sink, have);
      std::fclose(f);
      if (r.status >= 300 && r.status < 400 && r.headers.count("location")) {
        const std::string next = resolve_location(url, r.headers["location"]);
        if (host_of(next) != host_of(url)) auth = false;  // signed CDN URL: no token there
        url = next;
        continue;
      }
      break;
    }
    if (!r.network_error() && r.status == 200 && have > 0) {
      // The server ignored Range and sent everything: keep only the new copy.
      const int64_t now = static_cast<int64_t>(fs::file_size(incomplete, ec));
      std::vector<char> tail(static_cast<size_t>(now - have));
      {
        std::ifstream in(incomplete, std::ios::binary);
        in.seekg(have);
        in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
      }
      std::ofstream out(incomplete, std::ios::binary | std::ios::trunc);
      out.write(tail.data(), static_cast<std::streamsize>(tail.size()));
    }
    const int64_t got = fs::exists(incomplete, ec) ? static_cast<int64_t>(fs::file_size(incomplete, ec)) : 0;
    const bool ok_status = r.status == 200 || r.status == 206;
    if (!r.network_error() && ok_status && (meta.size < 0 || got == meta.size)) break;
    if (r.status == 401 || r.status == 403 || r.status == 404) {
      fs::remove(incomplete, ec);
      throw InputError(file + ": HTTP " + std::to_string(r.status) + " while downloading " + url);
    }
    if (attempt + 1 >= kAttempts) {
      if (r.network_error()) unreachable(url, r.error);
      throw ResourceError(file + ": download incomplete after " + std::to_string(kAttempts) + " tries (HTTP " +
                          std::to_string(r.status) + ", " + std::to_string(got) + " of " + std::to_string(meta.size) +
                          " bytes); run again to resume");
    }
    log_warn(file + ": download interrupted (" + (r.network_error() ? r.error : "HTTP " + std::to_string(r.status)) +
             "), resuming at byte " + std::to_string(got));
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms(attempt)));
  }
  progress.finish();
  if (is_sha256(meta.etag)) {
    const std::string digest = sha256_file(incomplete.string());
    if (digest != meta.etag) {
      fs::remove(incomplete, ec);
      throw InputError(file + ": downloaded content has sha256 " + digest + " but the hub announced " + meta.etag +
                       " (nothing was kept; run again)");
    }
  }
  fs::rename(incomplete, blob, ec);
  if (ec) throw ResourceError(blob.string() + ": cannot move into place: " + ec.message());
}

void link_snapshot(const fs::path& snapshot, const std::string& file, const std::string& etag) {
  const fs::path link = snapshot / file;
  fs::create_directories(link.parent_path());
  // Relative to the link's folder: ../../blobs/<etag> plus one ../ per subfolder.
  std::string target = "../../blobs/" + etag;
  for (auto c : file) {
    if (c == '/') target = "../" + target;
  }
  const fs::path tmp = link.string() + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp, ec);
  if (!ec) fs::rename(tmp, link, ec);
  if (ec) throw ResourceError(link.string() + ": cannot create snapshot entry: " + ec.message());
}

}  // namespace

bool hub_offline() { return truthy(env_string("HF_HUB_OFFLINE")) || truthy(env_string("TRANSFORMERS_OFFLINE")); }

std::string download_model(const std::string& repo, const std::string& revision, bool progress) {
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) throw Error("libcurl global initialization failed");
  std::string folder = "models--";
  for (char c : repo) folder += (c == '/') ? std::string("--") : std::string(1, c);
  const fs::path root = fs::path(hf_hub_cache_dir()) / folder;
  const fs::path blobs = root / "blobs";
  const fs::path locks = fs::path(hf_hub_cache_dir()) / ".locks" / folder;
  log_info(repo + " is not in the cache: downloading from " + endpoint() + " (revision " + revision + ")");

  bool missing = false;
  const FileMeta config = file_metadata(repo, revision, "config.json", missing);
  if (missing) {
    const std::string which = config.error_code == "RevisionNotFound" ? "the repo has no revision '" + revision + "'"
                              : config.error_code == "EntryNotFound"  ? "the repo has no config.json at revision " + revision
                              : config.error_code == "RepoNotFound"   ? "no such repo"
                                                                      : "no config.json at revision " + revision +
                                                                          ": check the repo id and --revision";
    throw InputError("'" + repo + "' is neither a local directory nor found on the hub (" + which + ")");
  }
  const std::string commit = config.commit;
  const fs::path snapshot = root / "snapshots" / commit;
  auto get = [&](const std::string& file, const FileMeta& meta) {
    fetch_blob(file, meta, blobs, locks, progress);
    link_snapshot(snapshot, file, meta.etag);
  };
  get("config.json", config);
  for (const char* f : {"generation_config.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                        "merges.txt", "tokenizer.json", "tokenizer.model", "added_tokens.json"}) {
    const FileMeta m = file_metadata(repo, commit, f, missing);
    if (!missing) get(f, m);
  }
  // Weights, in transformers' order of preference.
  bool found = false;
  for (const char* single : {"model.safetensors", "pytorch_model.bin"}) {
    const std::string index = std::string(single) + ".index.json";
    FileMeta m = file_metadata(repo, commit, single, missing);
    if (!missing) {
      get(single, m);
      found = true;
      break;
    }
    m = file_metadata(repo, commit, index, missing);
    if (missing) continue;
    get(index, m);
    std::set<std::string> shards;
    for (const auto& path : weight_files(snapshot.string())) shards.insert(fs::path(path).filename().string());
    for (const auto& shard : shards) {
      const FileMeta sm = file_metadata(repo, commit, shard, missing);
      if (missing) throw InputError("'" + repo + "': shard " + shard + " listed in " + index + " is not on the hub");
      get(shard, sm);
    }
    found = true;
    break;
  }
  if (!found) throw InputError("'" + repo + "' at revision " + revision + " has no model.safetensors or pytorch_model.bin");
  if (revision != commit) {
    const fs::path ref = root / "refs" / revision;
    fs::create_directories(ref.parent_path());
    write_file_atomic(ref.string(), commit);
  }
  return snapshot.string();
}

}  // namespace llmc::io
