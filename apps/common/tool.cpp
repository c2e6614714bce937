#include "tool.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <new>

#include <unistd.h>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/metrics.h"
#include "llmc/core/version.h"
#include "llmc/io/json_file.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::cli {

namespace {

std::atomic<bool> g_cancel{false};

extern "C" void on_signal(int) { g_cancel.store(true); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;  // a second signal ends the process at once
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A file-size limit (ulimit -f) makes write() fail with EFBIG, reported as exit 4, instead
  // of killing the process half-way through an output.
  signal(SIGXFSZ, SIG_IGN);
}

void add_common_flags(CLI::App& app, CommonFlags& f, const std::string& config_help) {
  app.add_option("--device", f.device, "auto | cpu | cuda | cuda:N");
  app.add_option("--dtype", f.dtype, "compute dtype: float32 | bfloat16 | float16 (float16 needs CUDA)");
  app.add_option("--threads", f.threads, "CPU threads (0 = all logical cores)");
  app.add_option("--seed", f.seed, "random seed");
  app.add_option("--revision", f.revision, "revision of a hub model id (branch, tag or commit)");
  app.add_option("--config", f.config, config_help);
  app.add_option("--metrics_out", f.metrics_out, "also write the metrics JSON here (also on failure)");
  app.add_flag("--json", f.json, "print the metrics JSON on stdout instead of the summary");
  app.add_option("--log_level", f.log_level, "trace | debug | info | warn | error | off");
  app.add_flag("--quiet", f.quiet, "only errors on stderr, no progress");
  app.add_flag("--overwrite", f.overwrite, "replace an existing output directory");
  for (const char* name : {"--device", "--dtype", "--threads", "--seed", "--revision", "--log_level", "--config"}) {
    app.get_option(name)->capture_default_str();
  }
}

// --config FILE: turns the JSON object into flags placed before the explicit ones (the
// last occurrence of an option wins, so explicit flags override the file).
std::vector<std::string> config_args(CLI::App& app, const std::string& path) {
  const nlohmann::json j = io::read_json_file(path);
  if (!j.is_object()) throw UsageError(path + ": a --config file must be a JSON object of flag names");
  std::vector<std::string> args;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    CLI::Option* opt = key == "config" || key == "help" || key == "version" ? nullptr : app.get_option_no_throw("--" + key);
    if (opt == nullptr) {
      throw UsageError(path + ": unknown key '" + key + "' (keys are this tool's flag names; see --help)");
    }
    const nlohmann::json& v = it.value();
    if (opt->get_expected_min() == 0) {  // a flag
      if (!v.is_boolean()) throw UsageError(path + ": '" + key + "' must be true or false");
      if (v.get<bool>()) args.push_back("--" + key);
      continue;
    }
    if (v.is_string()) args.push_back("--" + key + "=" + v.get<std::string>());
    else if (v.is_number() || v.is_boolean()) args.push_back("--" + key + "=" + v.dump());
    else if (v.is_null()) continue;
    else throw UsageError(path + ": '" + key + "' must be a string, number or boolean");
  }
  return args;
}

std::string find_config_arg(int argc, char** argv) {
  std::string path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) path = argv[i + 1];
    else if (a.rfind("--config=", 0) == 0) path = a.substr(9);
  }
  return path;
}

// The resolved flags, typed: flags as booleans, numbers as numbers.
nlohmann::json resolved_options(const CLI::App& app) {
  nlohmann::json o = nlohmann::json::object();
  for (const CLI::Option* opt : app.get_options()) {
    const std::string name = opt->get_single_name();
    if (name.empty() || name == "help" || name == "version") continue;
    if (opt->get_expected_min() == 0) {
      o[name] = opt->count() > 0;
      continue;
    }
    std::string v = opt->count() > 0 ? opt->as<std::string>() : opt->get_default_str();
    if (!v.empty()) {
      char* end = nullptr;
      const long long i = std::strtoll(v.c_str(), &end, 10);
      if (*end == '\0') { o[name] = i; continue; }
      const double d = std::strtod(v.c_str(), &end);
      if (*end == '\0') { o[name] = d; continue; }
    }
    o[name] = v;
  }
  return o;
}

// An error message as shown: names and values in it may come from a hostile file, so it is
// cut to a bounded length, made valid UTF-8 (metrics JSON needs it) and control characters
// (terminal escapes) are replaced.
std::string shown_message(const std::string& what) {
  constexpr size_t kMax = 2000;
  std::string s = tokenizer::sanitize_utf8(
      what.size() > kMax ? what.substr(0, kMax) + "... (" + std::to_string(what.size() - kMax) + " more bytes)" : what);
  for (char& c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n') || u == 0x7f) c = '?';
  }
  return s;
}

// Objects of objects (evaluate's compare and tasks) are shown as indented blocks, one key
// a line; anything else on one line.
void print_entries(const nlohmann::json& obj, int depth) {
  const std::string indent(static_cast<size_t>(2 * depth), ' ');
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (depth == 1 && (it.key() == "options" || it.key() == "tool" || it.key() == "status" || it.key() == "llmc_version")) continue;
    const nlohmann::json& v = it.value();
    if (v.is_object() && depth < 3 && !v.empty() && (it.key() == "compare" || it.key() == "tasks" || depth > 1)) {
      std::cout << indent << it.key() << ":\n";
      print_entries(v, depth + 1);
      continue;
    }
    std::cout << indent << it.key() << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  }
}

void print_summary(const std::string& tool, const nlohmann::json& metrics) {
  std::cout << tool << ": " << metrics.value("status", "ok") << "\n";
  print_entries(metrics, 1);
}

void write_metrics_out(const std::string& path, const nlohmann::json& metrics) {
  if (path.empty()) return;
  io::write_file_atomic(path, metrics.dump(2) + "\n");
}

// LibTorch's OpenMP workers spin after each parallel region while OpenBLAS's own threads
// run the matrix products; on a 2-core machine the two fight for the cores (perplexity ran
// ~3x slower with --threads 2 than 1; experiments/README.md). libgomp reads
// OMP_WAIT_POLICY only when it loads, so set it and start the program again, once.
void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("LLMC_NO_REEXEC") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);
  // exec failed: carry on with the default policy.
}

}  // namespace

void add_option_fields(CLI::App& app, const std::vector<OptionField>& fields) {
  for (const auto& f : fields) {
    if (f.role == OptionField::Role::kCommon) continue;
    const std::string flag = "--" + f.name;
    CLI::Option* opt = nullptr;
    if (f.is_switch) opt = app.add_flag(flag, *std::get<bool*>(f.target), f.help);
    else opt = std::visit([&](auto* target) { return app.add_option(flag, *target, f.help); }, f.target);
    if (f.required) opt->required();
    if (!f.is_switch) opt->capture_default_str();
  }
}

int run_tool(const std::string& tool, CLI::App& app, int argc, char** argv, const ToolBody& body,
             const ToolSettings& settings) {
  ensure_passive_openmp(argv);
  CommonFlags flags = settings.defaults;
  add_common_flags(app, flags, settings.config_help);
  app.set_version_flag("--version", std::string("llmc ") + version());
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  for (CLI::Option* opt : app.get_options()) opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto fail = [&](const llmc::Error& e, bool parsed) -> int {
    const std::string message = shown_message(e.what());
    std::cerr << tool << ": " << e.kind() << ": " << message << std::endl;
    if (parsed && !flags.metrics_out.empty()) {
      const nlohmann::json metrics =
          wrap_metrics(tool, {{"error", message}}, resolved_options(app), elapsed(),
                       e.code() == ExitCode::kInterrupted ? "interrupted" : "failed");
      try {
        write_metrics_out(flags.metrics_out, metrics);
      } catch (const std::exception& w) {
        std::cerr << tool << ": cannot write --metrics_out: " << w.what() << std::endl;
      }
    }
    return static_cast<int>(e.code());
  };

  bool parsed = false;
  try {
    std::vector<std::string> args;
    const std::string config = settings.config_is_flag_file ? find_config_arg(argc, argv) : std::string();
    if (!config.empty()) args = config_args(app, config);
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    std::reverse(args.begin(), args.end());  // CLI11 takes the vector in reverse order
    try {
      app.parse(args);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      std::cerr << tool << ": usage error: " << e.what() << "\n(see " << tool << " --help)" << std::endl;
      return static_cast<int>(ExitCode::kUsage);
    }
    parsed = true;
    // The documentation check (tests/doc_commands_test.py): the flags parse, nothing runs.
    if (std::getenv("LLMC_PARSE_ONLY") != nullptr) return 0;
    setup_logging(flags.log_level, flags.quiet);
    install_signal_handlers();
    RunContextOptions rc;
    rc.device = flags.device;
    rc.dtype = flags.dtype;
    rc.threads = flags.threads;
    rc.seed = flags.seed;
    RunContext ctx = make_run_context(rc);
    ctx.cancel_flag = &g_cancel;
    ctx.progress = !flags.quiet;
    log_info(tool + " on " + ctx.device.str() + ", " + dtype_name(ctx.dtype) + ", " + std::to_string(ctx.threads) +
             " thread(s)");

    auto decorate = [&](const nlohmann::json& result) { return wrap_metrics(tool, result, resolved_options(app), elapsed()); };
    nlohmann::json result = body(ctx, flags, decorate);
    ctx.check_cancelled();
    const nlohmann::json metrics = decorate(result);
    write_metrics_out(flags.metrics_out, metrics);
    if (flags.json) std::cout << metrics.dump(2) << std::endl;
    else {
      const std::string text = settings.summary ? settings.summary(metrics) : std::string();
      if (text.empty()) print_summary(tool, metrics);
      else std::cout << text << std::flush;
    }
    return 0;
  } catch (const llmc::Error& e) {
    return fail(e, parsed);
  } catch (const std::bad_alloc&) {
    return fail(ResourceError("out of memory"), parsed);
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (msg.find("out of memory") != std::string::npos || msg.find("DefaultCPUAllocator") != std::string::npos) {
      return fail(ResourceError("out of memory: " + msg), parsed);
    }
    return fail(llmc::Error("LibTorch: " + msg), parsed);
  } catch (const std::exception& e) {
    return fail(llmc::Error(e.what()), parsed);
  }
}

}  // namespace llmc::cli
