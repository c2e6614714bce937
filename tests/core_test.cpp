#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/core/metrics.h"
#include "llmc/core/options.h"
#include "llmc/core/version.h"
#include "llmc/core/progress.h"
#include "llmc/core/registry.h"
#include "llmc/core/run_context.h"
#include "test_util.h"

using namespace llmc;

TEST(Errors, ExitCodesMatchTheReadme) {
  EXPECT_EQ(static_cast<int>(UsageError("x").code()), 2);
  EXPECT_EQ(static_cast<int>(InputError("x").code()), 3);
  EXPECT_EQ(static_cast<int>(ResourceError("x").code()), 4);
  EXPECT_EQ(static_cast<int>(Cancelled().code()), 130);
  EXPECT_EQ(static_cast<int>(Error("x").code()), 1);
}

TEST(Registry, LooksUpAndListsNames) {
  Registry<int> r("widget");
  r.add("b", 2);
  r.add("a", 1);
  EXPECT_EQ(r.get("a"), 1);
  EXPECT_TRUE(r.contains("b"));
  EXPECT_EQ(r.joined_names(), "a, b");
  test::expect_error<UsageError>([&] { r.get("zzz"); }, "unsupported widget 'zzz' (supported: a, b)");
  test::expect_error<InputError>([&] { r.get<InputError>("q"); }, "unsupported widget 'q'");
  EXPECT_THROW(r.add("a", 3), Error);
}

TEST(RunContext, ResolvesDeviceAndDtype) {
  RunContextOptions o;
  o.device = "cpu";
  o.threads = 1;
  RunContext ctx = make_run_context(o);
  EXPECT_TRUE(ctx.device.is_cpu());
  EXPECT_EQ(ctx.dtype, c10::kFloat);
  EXPECT_EQ(ctx.threads, 1);
  o.dtype = "bfloat16";
  EXPECT_EQ(make_run_context(o).dtype, c10::kBFloat16);
  o.threads = 0;
  EXPECT_GE(make_run_context(o).threads, 1);  // all logical cores
}

TEST(RunContext, RefusesBadValues) {
  RunContextOptions o;
  o.device = "cpu";
  o.dtype = "float16";
  test::expect_error<UsageError>([&] { make_run_context(o); }, "float16 is not supported on the CPU");
  o.dtype = "int4";
  test::expect_error<UsageError>([&] { make_run_context(o); }, "found 'int4'");
  o.dtype = "float32";
  o.device = "tpu";
  test::expect_error<UsageError>([&] { make_run_context(o); }, "expected auto, cpu, cuda or cuda:N");
  o.device = "auto";
  EXPECT_NO_THROW(make_run_context(o));
}

TEST(RunContext, CudaWithoutCudaIsAResourceError) {
  RunContextOptions o;
  o.device = "cuda:0";
  try {
    RunContext ctx = make_run_context(o);
    EXPECT_TRUE(ctx.device.is_cuda());  // a machine with CUDA
  } catch (const ResourceError& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA was requested"), std::string::npos);
  }
}

TEST(RunContext, CancelFlagThrowsCancelled) {
  std::atomic<bool> flag{false};
  RunContext ctx;
  ctx.cancel_flag = &flag;
  EXPECT_NO_THROW(ctx.check_cancelled());
  flag = true;
  EXPECT_THROW(ctx.check_cancelled(), Cancelled);
}

TEST(Progress, CountsWithoutATerminal) {
  Progress p("work", 3, /*enabled=*/false);
  p.advance();
  p.advance(2);
  p.finish();
  SUCCEED();
}

TEST(Options, ParsesByteSizes) {
  EXPECT_EQ(parse_byte_size("5GB"), 5000000000ull);
  EXPECT_EQ(parse_byte_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("500MB"), 500000000ull);
  EXPECT_EQ(parse_byte_size("1024"), 1024ull);
  EXPECT_THROW(parse_byte_size("5 parsecs"), UsageError);
  EXPECT_THROW(parse_byte_size("GB"), UsageError);
}

TEST(Metrics, WrapsFiguresInTheSharedFrame) {
  const nlohmann::json m = wrap_metrics("prune", {{"tool", "x"}, {"sparsity", 0.5}}, {{"pruning_ratio", 0.5}}, 1.25);
  EXPECT_EQ(m["tool"], "prune");  // figures cannot rename the tool
  EXPECT_EQ(m["llmc_version"], version());
  EXPECT_EQ(m["status"], "ok");
  EXPECT_EQ(m["sparsity"], 0.5);
  EXPECT_EQ(m["elapsed_s"], 1.25);
  EXPECT_EQ(m["options"]["pruning_ratio"], 0.5);
  const nlohmann::json f = wrap_metrics("distill", nlohmann::json::object(), nullptr, -1.0, "interrupted");
  EXPECT_EQ(f["status"], "interrupted");
  EXPECT_FALSE(f.contains("elapsed_s"));
  EXPECT_FALSE(f.contains("options"));
}
