#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/io/atomic_dir.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/io/model_dir_writer.h"
#include "llmc/io/safetensors.h"
#include "llmc/io/torch_checkpoint.h"
#include "test_util.h"

using namespace llmc;
using llmc::test::expect_error;
using llmc::test::fixture;
namespace fs = std::filesystem;

namespace {

std::string read_bytes(const std::string& path) { return io::read_text_file(path); }

uint64_t header_len(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  return n;
}

}  // namespace

// ---------------------------------------------------------------- safetensors

TEST(Safetensors, RoundTripsEveryDtypeAndShape) {
  test::TempDir tmp;
  io::StateDict sd;
  sd["f32"] = at::randn({3, 5});
  sd["f16"] = at::randn({4}).to(c10::kHalf);
  sd["bf16"] = at::randn({2, 2, 2}).to(c10::kBFloat16);
  sd["i64"] = at::arange(7, at::TensorOptions().dtype(c10::kLong));
  sd["u8"] = at::arange(10, at::TensorOptions().dtype(c10::kByte));
  sd["scalar"] = at::tensor(2.5);
  sd["empty"] = at::randn({0, 4});
  sd["transposed"] = at::randn({3, 4}).t();  // non-contiguous input is written contiguous
  const std::string path = tmp / "x.safetensors";
  io::save_safetensors(path, sd);
  auto f = io::SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.entries().size(), sd.size());
  for (const auto& [name, t] : sd) {
    at::Tensor back = f.tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(back, t.contiguous())) << name;  // bit-exact
  }
}

// release_pages drops the pages behind a view of a loaded file (its values come back from the
// file) and leaves any other tensor alone (MADV_DONTNEED would zero anonymous memory).
TEST(Safetensors, ReleasePagesTouchesOnlyFileMappings) {
  test::TempDir tmp;
  io::StateDict sd;
  sd["big"] = at::randn({1024, 256});  // 1 MiB: whole pages inside
  const std::string path = tmp / "x.safetensors";
  io::save_safetensors(path, sd);
  const at::Tensor expected = sd["big"].clone();
  auto f = io::SafetensorsFile::open(path);
  const at::Tensor mapped = f.tensor("big");
  io::release_pages(mapped);
  EXPECT_TRUE(at::equal(mapped, expected));
  at::Tensor anonymous = at::randn({1024, 256});
  const at::Tensor copy = anonymous.clone();
  io::release_pages(anonymous);
  EXPECT_TRUE(at::equal(anonymous, copy));
}

TEST(Safetensors, WriterFollowsTheReferenceLayout) {
  test::TempDir tmp;
  io::StateDict sd;
  sd["a_u8"] = at::ones({3}, at::TensorOptions().dtype(c10::kByte));
  sd["b_f16"] = at::ones({3}, at::TensorOptions().dtype(c10::kHalf));
  sd["c_f32"] = at::ones({2}, at::TensorOptions().dtype(c10::kFloat));
  sd["d_f32"] = at::ones({1}, at::TensorOptions().dtype(c10::kFloat));
  const std::string path = tmp / "x.safetensors";
  io::save_safetensors(path, sd);
  const std::string bytes = read_bytes(path);
  const uint64_t n = header_len(bytes);
  EXPECT_EQ(n % 8, 0u);  // header padded to 8 bytes
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find("{\"__metadata__\":{\"format\":\"pt\"}"), 0u);  // metadata first, compact
  // Largest alignment first, then by name: F32 (c, d), F16 (b), U8 (a).
  auto pos = [&](const char* k) { return header.find(k); };
  EXPECT_LT(pos("\"c_f32\""), pos("\"d_f32\""));
  EXPECT_LT(pos("\"d_f32\""), pos("\"b_f16\""));
  EXPECT_LT(pos("\"b_f16\""), pos("\"a_u8\""));
  EXPECT_NE(header.find("\"c_f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), std::string::npos);
  EXPECT_EQ(bytes.size(), 8 + n + 8 + 4 + 6 + 3);
}

TEST(Safetensors, RefusesAliasedTensors) {
  test::TempDir tmp;
  at::Tensor t = at::randn({4});
  io::StateDict sd{{"a", t}, {"b", t}};
  EXPECT_THROW(io::save_safetensors(tmp / "x.safetensors", sd), Error);
}

TEST(Safetensors, ShardedWriterRoundTrips) {
  test::TempDir tmp;
  io::StateDict sd;
  for (int i = 0; i < 5; ++i) sd["t" + std::to_string(i)] = at::randn({100});  // 400 bytes each
  auto write_sharded = [&](const std::string& dir, uint64_t max_shard) {
    io::SafetensorsStreamWriter writer(dir + "/.spill.tmp");
    for (const auto& [name, t] : sd) writer.add(name, t);
    return writer.finish(dir, max_shard);
  };
  const auto files = write_sharded(tmp.path(), 1000);
  EXPECT_EQ(files.back(), "model.safetensors.index.json");
  EXPECT_EQ(files.size(), 4u);  // 3 shards (2+2+1 tensors) + index
  EXPECT_EQ(files[0], "model-00001-of-00003.safetensors");
  const auto index = io::read_json_file(tmp / "model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), 2000);
  EXPECT_EQ(index["weight_map"]["t4"].get<std::string>(), "model-00003-of-00003.safetensors");
  io::StateDict back = io::load_weights(tmp.path());
  ASSERT_EQ(back.size(), 5u);
  for (const auto& [k, v] : sd) EXPECT_TRUE(at::equal(back.at(k), v)) << k;
  // One shard when everything fits.
  test::TempDir one;
  EXPECT_EQ(write_sharded(one.path(), 5000000000ull),
            std::vector<std::string>{"model.safetensors"});
}

struct BadSafetensorsCase {
  const char* dir;
  const char* needle;
};

class BadSafetensors : public ::testing::TestWithParam<BadSafetensorsCase> {};

TEST_P(BadSafetensors, IsAnInputErrorNamingTheProblem) {
  const auto& c = GetParam();
  const std::string path = fixture(std::string("bad/") + c.dir + "/model.safetensors");
  expect_error<InputError>([&] { io::SafetensorsFile::open(path); }, c.needle);
  expect_error<InputError>([&] { io::SafetensorsFile::open(path); }, "model.safetensors");
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, BadSafetensors,
    ::testing::Values(BadSafetensorsCase{"st_truncated", "truncated"},
                      BadSafetensorsCase{"st_header_too_long", "runs past the end of the file"},
                      BadSafetensorsCase{"st_overlap", "without gaps or overlaps"},
                      BadSafetensorsCase{"st_gap", "without gaps or overlaps"},
                      BadSafetensorsCase{"st_unknown_dtype", "unknown dtype 'F13'"},
                      BadSafetensorsCase{"st_size_mismatch", "needs 36 bytes, but data_offsets give 32"}));

TEST(Safetensors, RefusesTinyAndHugeHeaders) {
  test::TempDir tmp;
  {
    std::ofstream(tmp / "tiny.safetensors") << "abc";
  }
  expect_error<InputError>([&] { io::SafetensorsFile::open(tmp / "tiny.safetensors"); }, "expected at least 8");
  {
    std::ofstream out(tmp / "huge.safetensors", std::ios::binary);
    const uint64_t n = 200'000'000;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << "{}";
  }
  expect_error<InputError>([&] { io::SafetensorsFile::open(tmp / "huge.safetensors"); }, "exceeds the limit");
  {
    std::ofstream out(tmp / "notjson.safetensors", std::ios::binary);
    const uint64_t n = 4;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << "{abc";
  }
  expect_error<InputError>([&] { io::SafetensorsFile::open(tmp / "notjson.safetensors"); }, "not valid JSON");
}

// ---------------------------------------------------------------- torch zip

TEST(TorchCheckpoint, ReadsSharedStoragesOffsetsStridesAndDtypes) {
  io::StateDict got = io::load_torch_checkpoint(fixture("pickles/mixed.pt"));
  auto expected = io::SafetensorsFile::open(fixture("pickles/mixed_expected.safetensors"));
  ASSERT_EQ(got.size(), expected.entries().size());
  for (const auto& e : expected.entries()) {
    ASSERT_TRUE(got.count(e.name)) << e.name;
    EXPECT_EQ(got[e.name].sizes(), expected.tensor(e.name).sizes()) << e.name;
    EXPECT_TRUE(at::equal(got[e.name].to(c10::kFloat), expected.tensor(e.name))) << e.name;
  }
  EXPECT_EQ(got["half"].scalar_type(), c10::kHalf);
  EXPECT_EQ(got["bf16"].scalar_type(), c10::kBFloat16);
  EXPECT_EQ(got["long"][2].item<int64_t>(), int64_t{1} << 40);
  // Views share the storage of "full", as in torch.
  EXPECT_EQ(got["transposed"].data_ptr(), got["full"].data_ptr());
}

TEST(TorchCheckpoint, TakesTheArchiveFolderFromTheFirstEntry) {
  io::StateDict got = io::load_torch_checkpoint(fixture("pickles/weird-name.v2.bin"));
  ASSERT_EQ(got.count("w"), 1u);
  EXPECT_EQ(got["w"].sum().item<float>(), 276.0f);
}

TEST(TorchCheckpoint, HonoursBigEndianByteOrder) {
  io::StateDict got = io::load_torch_checkpoint(fixture("pickles/big_endian.pt"));
  EXPECT_TRUE(at::equal(got.at("x"), at::tensor(std::vector<float>{1.0f, 2.5f, -7.75f})));
}

TEST(TorchCheckpoint, RefusesForbiddenGlobalsWithoutRunningThem) {
  const std::string path = fixture("bad/bin_forbidden_global/pytorch_model.bin");
  expect_error<InputError>([&] { io::load_torch_checkpoint(path); }, "forbidden global 'posix.system'");
  EXPECT_FALSE(fs::exists("PWNED"));
}

TEST(TorchCheckpoint, RefusesTruncatedAndLegacyFiles) {
  expect_error<InputError>([&] { io::load_torch_checkpoint(fixture("bad/bin_truncated/pytorch_model.bin")); },
                           "corrupt or truncated zip");
  expect_error<InputError>([&] { io::load_torch_checkpoint(fixture("bad/bin_legacy/pytorch_model.bin")); },
                           "legacy (pre-1.6, non-zip)");
  test::TempDir tmp;
  std::ofstream(tmp / "junk.bin") << "definitely not a checkpoint";
  expect_error<InputError>([&] { io::load_torch_checkpoint(tmp / "junk.bin"); }, "no ZIP header");
}

// ---------------------------------------------------------------- HF directories and cache

TEST(HfModelDir, LoadsEveryWeightLayout) {
  for (const char* dir : {"opt_preln_f32", "opt_preln_bf16_sharded", "opt_preln_bin", "opt_postln_f16_bin",
                          "opt_postln_bin_sharded"}) {
    io::StateDict sd = io::load_weights(fixture(dir));
    EXPECT_GT(sd.size(), 10u) << dir;
  }
  // The f32 safetensors and the torch.save .bin hold the same numbers.
  io::StateDict a = io::load_weights(fixture("opt_preln_f32"));
  io::StateDict b = io::load_weights(fixture("opt_preln_bin"));
  for (const auto& [k, v] : a) EXPECT_TRUE(at::equal(v, b.at(k))) << k;
  EXPECT_EQ(b.at("lm_head.weight").data_ptr(), b.at("model.decoder.embed_tokens.weight").data_ptr());
}

TEST(HfModelDir, SafetensorsWinOverBin) {
  test::TempDir tmp;
  fs::copy(fixture("opt_preln_bin/pytorch_model.bin"), tmp / "pytorch_model.bin");
  io::save_safetensors(tmp / "model.safetensors", {{"only", at::ones({1})}});
  EXPECT_EQ(io::weight_files(tmp.path()), std::vector<std::string>{tmp / "model.safetensors"});
  test::TempDir empty;
  expect_error<InputError>([&] { io::weight_files(empty.path()); }, "no weights found");
}

TEST(HfModelDir, RefusesShardNamesThatLeaveTheDirectory) {
  test::TempDir tmp;
  std::ofstream(tmp / "model.safetensors.index.json") << R"({"weight_map": {"a": "../../etc/passwd"}})";
  expect_error<InputError>([&] { io::weight_files(tmp.path()); }, "is not a plain file name");
}

class HubCache : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = std::getenv("HF_HUB_CACHE");
    if (old != nullptr) saved_ = old;
    setenv("HF_HUB_CACHE", cache_.path().c_str(), 1);
    const fs::path repo = fs::path(cache_.path()) / "models--facebook--opt-tiny";
    fs::create_directories(repo / "refs");
    fs::create_directories(repo / "blobs");
    snapshot_ = (repo / "snapshots" / kCommit).string();
    fs::create_directories(snapshot_);
    std::ofstream(repo / "refs" / "main") << kCommit;
    // Files are symlinks into blobs/, as huggingface_hub makes them.
    std::ofstream(repo / "blobs" / "abc123") << "{}";
    fs::create_symlink("../../blobs/abc123", fs::path(snapshot_) / "config.json");
  }
  void TearDown() override {
    if (saved_.empty()) unsetenv("HF_HUB_CACHE");
    else setenv("HF_HUB_CACHE", saved_.c_str(), 1);
  }
  static constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";
  test::TempDir cache_;
  std::string snapshot_;
  std::string saved_;
};

TEST_F(HubCache, ResolvesRefsToSnapshots) {
  EXPECT_EQ(io::resolve_model_dir("facebook/opt-tiny", "main"), snapshot_);
  EXPECT_EQ(io::resolve_model_dir("facebook/opt-tiny", kCommit), snapshot_);
  EXPECT_EQ(io::directory_size_bytes(snapshot_), 2u);  // follows the symlink
}

TEST_F(HubCache, AMissListsWhereItLooked) {
  setenv("HF_HUB_OFFLINE", "1", 1);  // no download attempt (tests/hub_test.sh covers downloads)
  expect_error<InputError>([&] { io::resolve_model_dir("facebook/opt-nope", "main"); },
                           "models--facebook--opt-nope/refs/main");
  expect_error<InputError>([&] { io::resolve_model_dir("facebook/opt-tiny", "v2"); }, "refs/v2");
  unsetenv("HF_HUB_OFFLINE");
}

TEST(HubCacheEnv, FollowsTheDocumentedVariables) {
  const char* keep_cache = std::getenv("HF_HUB_CACHE");
  const std::string saved = keep_cache ? keep_cache : "";
  unsetenv("HF_HUB_CACHE");
  setenv("HF_HOME", "/tmp/hfhome", 1);
  EXPECT_EQ(io::hf_hub_cache_dir(), "/tmp/hfhome/hub");
  unsetenv("HF_HOME");
  setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  EXPECT_EQ(io::hf_hub_cache_dir(), "/tmp/xdg/huggingface/hub");
  unsetenv("XDG_CACHE_HOME");
  setenv("HF_HUB_CACHE", "/tmp/direct", 1);
  EXPECT_EQ(io::hf_hub_cache_dir(), "/tmp/direct");
  if (saved.empty()) unsetenv("HF_HUB_CACHE");
  else setenv("HF_HUB_CACHE", saved.c_str(), 1);
}

// ---------------------------------------------------------------- atomic output

TEST(AtomicOutputDir, AppearsOnlyOnCommit) {
  test::TempDir tmp;
  const std::string out = tmp / "out";
  {
    io::AtomicOutputDir dir(out, false);
    std::ofstream(fs::path(dir.staging()) / "a.txt") << "x";
    EXPECT_FALSE(fs::exists(out));
  }  // not committed: nothing left behind
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 0);
  {
    io::AtomicOutputDir dir(out, false);
    std::ofstream(fs::path(dir.staging()) / "a.txt") << "x";
    dir.commit();
  }
  EXPECT_TRUE(fs::exists(fs::path(out) / "a.txt"));
  EXPECT_THROW(io::AtomicOutputDir(out, false), UsageError);
  {
    io::AtomicOutputDir dir(out, true);
    std::ofstream(fs::path(dir.staging()) / "b.txt") << "y";
    dir.commit();
  }
  EXPECT_FALSE(fs::exists(fs::path(out) / "a.txt"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "b.txt"));
}

TEST(AtomicOutputDir, RemovesStagingOfKilledRunsOnly) {
  test::TempDir tmp;
  // pid 2^22 + 1 is above Linux's pid_max limit: never a running process.
  const fs::path dead = tmp.path() + "/.out.tmp.4194305", dead_old = tmp.path() + "/.out.tmp.4194305.old";
  const fs::path live = tmp.path() + "/.out.tmp.1", other = tmp.path() + "/.other.tmp.4194305";
  for (const auto& d : {dead, dead_old, live, other}) fs::create_directories(d / "x");
  { io::AtomicOutputDir dir(tmp / "out", false); }
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_FALSE(fs::exists(dead_old));
  EXPECT_TRUE(fs::exists(live));   // pid 1 is running
  EXPECT_TRUE(fs::exists(other));  // another output's staging
  io::remove_abandoned_staging(tmp.path());
  EXPECT_FALSE(fs::exists(other));
  EXPECT_TRUE(fs::exists(live));
}

// ---------------------------------------------------------------- model directory writer

TEST(ModelDirWriter, WritesWeightsConfigSideFilesAndMarkerLast) {
  test::TempDir tmp;
  const std::string src = tmp / "src", out = tmp / "out";
  fs::create_directories(src);
  std::ofstream(fs::path(src) / "vocab.json") << "{}";
  std::ofstream(fs::path(src) / "unrelated.txt") << "not copied";
  io::StateDict sd = {{"a", at::randn({10})}, {"b", at::ones({3, 4}, at::kHalf)}};
  {
    io::ModelDirWriter w(out, io::ModelDirWriter::Place::kNewDirectory, false);
    for (const auto& [k, v] : sd) w.add_tensor(k, v);
    EXPECT_EQ(w.finish_weights(1ull << 30), std::vector<std::string>{"model.safetensors"});
    w.write_json("config.json", {{"model_type", "opt"}});
    w.copy_side_files(src);
    EXPECT_FALSE(fs::exists(out));  // nothing at the final path before commit
    const uint64_t staged = w.staged_bytes();
    EXPECT_EQ(staged, io::directory_size_bytes(w.staging()));
    w.commit("metrics.json", {{"disk_size_bytes", staged}});
  }
  EXPECT_TRUE(fs::exists(fs::path(out) / "vocab.json"));
  EXPECT_FALSE(fs::exists(fs::path(out) / "unrelated.txt"));
  EXPECT_FALSE(fs::exists(fs::path(out) / ".spill.tmp"));
  EXPECT_EQ(io::read_json_file(out + "/metrics.json")["disk_size_bytes"].get<uint64_t>(), io::directory_size_bytes(out));
  const io::StateDict back = io::load_weights(out);
  for (const auto& [k, v] : sd) EXPECT_TRUE(at::equal(back.at(k), v)) << k;
  // Not committed: nothing is left behind, and the existing output is untouched.
  {
    io::ModelDirWriter w(out, io::ModelDirWriter::Place::kNewDirectory, true);
    w.add_tensor("c", at::ones({2}));
  }
  EXPECT_EQ(io::load_weights(out).size(), 2u);
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 2);  // src, out
  EXPECT_THROW(io::ModelDirWriter(out, io::ModelDirWriter::Place::kNewDirectory, false), UsageError);
}

TEST(ModelDirWriter, IntoAnExistingDirectoryReplacesOnlyTheModelFiles) {
  test::TempDir tmp;
  const std::string out = tmp / "out";
  fs::create_directories(fs::path(out) / "checkpoint-5");
  std::ofstream(fs::path(out) / "model-00001-of-00002.safetensors") << "old shard";
  std::ofstream(fs::path(out) / "metrics.json") << "{}";
  {
    io::ModelDirWriter w(out, io::ModelDirWriter::Place::kIntoDirectory, true);
    w.add_tensor("a", at::ones({4}));
    w.finish_weights(1ull << 30);
    w.write_json("config.json", {{"model_type", "opt"}});
    EXPECT_FALSE(fs::exists(fs::path(out) / "config.json"));
  }  // not committed: the staging folder goes, the directory is as it was
  EXPECT_FALSE(fs::exists(fs::path(out) / ".final.tmp"));
  EXPECT_TRUE(fs::exists(fs::path(out) / "model-00001-of-00002.safetensors"));
  {
    io::ModelDirWriter w(out, io::ModelDirWriter::Place::kIntoDirectory, true);
    w.add_tensor("a", at::ones({4}));
    w.finish_weights(1ull << 30);
    w.commit("metrics.json", {{"done", true}});
  }
  EXPECT_FALSE(fs::exists(fs::path(out) / "model-00001-of-00002.safetensors"));  // two shardings never mix
  EXPECT_TRUE(fs::exists(fs::path(out) / "model.safetensors"));
  EXPECT_TRUE(fs::is_directory(fs::path(out) / "checkpoint-5"));
  EXPECT_TRUE(io::read_json_file(out + "/metrics.json")["done"].get<bool>());
  fs::create_directories(fs::path(out) / ".final.tmp");
  io::ModelDirWriter::remove_abandoned(out);
  EXPECT_FALSE(fs::exists(fs::path(out) / ".final.tmp"));
}
